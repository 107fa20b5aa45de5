package apnstest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
)

// maxControlBody bounds control API request bodies.
const maxControlBody = 1 << 20

// pushJSON is Push without its payload, which is spliced in verbatim.
type pushJSON struct {
	ApnsID      string          `json:"apnsId"`
	DeviceToken string          `json:"deviceToken"`
	Topic       string          `json:"topic"`
	PushType    string          `json:"pushType"`
	CollapseID  string          `json:"collapseId,omitempty"`
	Priority    int             `json:"priority"`
	Expiration  int64           `json:"expiration"`
	Header      http.Header     `json:"header"`
	Environment string          `json:"environment"`
	Auth        string          `json:"auth"`
	TeamID      string          `json:"teamId,omitempty"`
	KeyID       string          `json:"keyId,omitempty"`
	ReceivedAt  json.RawMessage `json:"receivedAt"`
}

// appendPushJSON appends p as a JSON object whose "payload" member is the
// exact payload bytes when they are valid JSON, else a JSON string.
func appendPushJSON(dst []byte, p *Push) ([]byte, error) {
	at, err := p.ReceivedAt.MarshalJSON()
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(pushJSON{
		ApnsID: p.ApnsID, DeviceToken: p.DeviceToken, Topic: p.Topic,
		PushType: p.PushType, CollapseID: p.CollapseID, Priority: p.Priority,
		Expiration: p.Expiration, Header: p.Header, Environment: p.Environment,
		Auth: p.Auth, TeamID: p.TeamID, KeyID: p.KeyID, ReceivedAt: at,
	})
	if err != nil {
		return nil, err
	}
	dst = append(dst, b[:len(b)-1]...)
	dst = append(dst, `,"payload":`...)
	if json.Valid(p.Payload) {
		dst = append(dst, p.Payload...)
	} else {
		s, _ := json.Marshal(string(p.Payload))
		dst = append(dst, s...)
	}
	return append(dst, '}'), nil
}

// MarshalJSON encodes p with its payload as raw JSON when the payload is
// valid JSON, else as a JSON string. (The control API writes the payload
// bytes verbatim; encoding/json may compact them when p is nested.)
func (p Push) MarshalJSON() ([]byte, error) {
	return appendPushJSON(nil, &p)
}

// UnmarshalJSON decodes a Push written by MarshalJSON or the control API,
// keeping a raw JSON payload's bytes exactly.
func (p *Push) UnmarshalJSON(b []byte) error {
	var in struct {
		pushJSON
		Payload json.RawMessage `json:"payload"`
	}
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	out := Push{
		ApnsID: in.ApnsID, DeviceToken: in.DeviceToken, Topic: in.Topic,
		PushType: in.PushType, CollapseID: in.CollapseID, Priority: in.Priority,
		Expiration: in.Expiration, Header: in.Header, Environment: in.Environment,
		Auth: in.Auth, TeamID: in.TeamID, KeyID: in.KeyID,
	}
	if len(in.ReceivedAt) > 0 {
		if err := out.ReceivedAt.UnmarshalJSON(in.ReceivedAt); err != nil {
			return err
		}
	}
	switch {
	case len(in.Payload) == 0 || string(in.Payload) == "null":
	case in.Payload[0] == '"':
		var s string
		if err := json.Unmarshal(in.Payload, &s); err != nil {
			return err
		}
		out.Payload = []byte(s)
	default:
		out.Payload = bytes.Clone(in.Payload)
	}
	*p = out
	return nil
}

func (s *Server) newControlMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_emulator/pushes", s.handleGetPushes)
	mux.HandleFunc("DELETE /_emulator/pushes", func(w http.ResponseWriter, _ *http.Request) {
		s.Reset()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /_emulator/stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.Stats())
	})
	mux.HandleFunc("PUT /_emulator/failures/{token}", func(w http.ResponseWriter, r *http.Request) {
		var f Failure
		if !readJSON(w, r, &f) {
			return
		}
		s.FailToken(r.PathValue("token"), f)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("DELETE /_emulator/failures/{token}", func(w http.ResponseWriter, r *http.Request) {
		s.ClearToken(r.PathValue("token"))
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("PUT /_emulator/failures", func(w http.ResponseWriter, r *http.Request) {
		var f *Failure
		if !readJSON(w, r, &f) {
			return
		}
		s.FailAll(f)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("DELETE /_emulator/failures", func(w http.ResponseWriter, _ *http.Request) {
		s.ClearFailures()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("/_emulator/", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "unknown control endpoint"})
	})
	return mux
}

func (s *Server) handleGetPushes(w http.ResponseWriter, _ *http.Request) {
	pushes := s.Pushes()
	buf := make([]byte, 0, 512*len(pushes)+2)
	buf = append(buf, '[')
	for i := range pushes {
		if i > 0 {
			buf = append(buf, ',')
		}
		var err error
		if buf, err = appendPushJSON(buf, &pushes[i]); err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
	}
	buf = append(buf, ']')
	w.Header().Set("Content-Type", contentTypeJSON)
	_, _ = w.Write(buf)
}

// readJSON decodes the request body into v, answering 400 on failure.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxControlBody))
	if err == nil {
		err = json.Unmarshal(body, v)
	}
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":"cannot encode response"}`)
	}
	w.Header().Set("Content-Type", contentTypeJSON)
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
