package fcmtest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
)

const controlPrefix = "/_emulator/"

// serveControl implements the JSON control API:
//
//	GET    /_emulator/pushes           recorded pushes (JSON array)
//	DELETE /_emulator/pushes           Reset
//	GET    /_emulator/dryruns          recorded validate_only requests
//	GET    /_emulator/stats            Stats
//	PUT    /_emulator/failures/{token} FailToken with a Failure object
//	DELETE /_emulator/failures/{token} ClearFailure
//	PUT    /_emulator/failures         FailAll with a Failure object; null clears
//	DELETE /_emulator/failures         ClearFailures
func (s *Server) serveControl(w http.ResponseWriter, r *http.Request) {
	rest := strings.TrimPrefix(r.URL.EscapedPath(), controlPrefix)
	switch {
	case rest == "pushes":
		switch r.Method {
		case http.MethodGet:
			writeJSON(w, http.StatusOK, nonNil(s.Pushes()))
		case http.MethodDelete:
			s.Reset()
			w.WriteHeader(http.StatusNoContent)
		default:
			controlError(w, http.StatusMethodNotAllowed, "method not allowed")
		}
	case rest == "dryruns" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, nonNil(s.DryRuns()))
	case rest == "stats" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, s.Stats())
	case rest == "failures":
		switch r.Method {
		case http.MethodPut:
			var f *Failure
			if !readJSON(w, r, &f) {
				return
			}
			if err := s.setAllFailure(f); err != nil {
				controlError(w, http.StatusBadRequest, "invalid failure: "+err.Error())
				return
			}
			w.WriteHeader(http.StatusNoContent)
		case http.MethodDelete:
			s.ClearFailures()
			w.WriteHeader(http.StatusNoContent)
		default:
			controlError(w, http.StatusMethodNotAllowed, "method not allowed")
		}
	case strings.HasPrefix(rest, "failures/"):
		token, err := url.PathUnescape(strings.TrimPrefix(rest, "failures/"))
		if err != nil || token == "" {
			controlError(w, http.StatusBadRequest, "invalid token in path")
			return
		}
		switch r.Method {
		case http.MethodPut:
			var f Failure
			if !readJSON(w, r, &f) {
				return
			}
			if err := s.setTokenFailure(token, f); err != nil {
				controlError(w, http.StatusBadRequest, "invalid failure: "+err.Error())
				return
			}
			w.WriteHeader(http.StatusNoContent)
		case http.MethodDelete:
			s.ClearFailure(token)
			w.WriteHeader(http.StatusNoContent)
		default:
			controlError(w, http.StatusMethodNotAllowed, "method not allowed")
		}
	default:
		controlError(w, http.StatusNotFound, "unknown control endpoint "+r.Method+" "+r.URL.Path)
	}
}

func nonNil(p []Push) []Push {
	if p == nil {
		return []Push{}
	}
	return p
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		controlError(w, http.StatusBadRequest, "read body: "+err.Error())
		return false
	}
	if err := json.Unmarshal(b, v); err != nil {
		controlError(w, http.StatusBadRequest, "decode body: "+err.Error())
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		controlError(w, http.StatusInternalServerError, "encode response: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func controlError(w http.ResponseWriter, code int, msg string) {
	b, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}
