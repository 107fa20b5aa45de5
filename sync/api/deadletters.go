package api

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"

	"github.com/pushsync/pushsync/sync/event"
)

// DeadLetterStore lists, replays and discards dead letters;
// *event.DeadLetters is one.
type DeadLetterStore interface {
	List(ctx context.Context, after uint64, limit int) ([]event.DeadLetter, error)
	Replay(ctx context.Context, seq uint64) error
	Discard(ctx context.Context, seq uint64) error
}

type deadLetterView struct {
	Sequence        uint64          `json:"sequence"`
	OriginalSubject string          `json:"originalSubject"`
	Reason          string          `json:"reason"`
	Deliveries      uint64          `json:"deliveries"`
	FailedAt        string          `json:"failedAt"`
	Devices         []string        `json:"devices"`
	Event           json.RawMessage `json:"event"`
}

func (s *Server) deadLetters() (DeadLetterStore, error) {
	if s.opts.DeadLetters == nil {
		return nil, invalidConfiguration("this server has no dead-letter stream")
	}
	return s.opts.DeadLetters, nil
}

func (s *Server) listDeadLetters(r *request) (any, error) {
	dl, err := s.deadLetters()
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	after, _, err := queryInt(q, "after", 0, 1<<62)
	if err != nil {
		return nil, err
	}
	limit, given, err := queryInt(q, "limit", 1, 1000)
	if err != nil {
		return nil, err
	}
	if !given {
		limit = 100
	}
	letters, err := dl.List(r.Context(), uint64(after), int(limit))
	if err != nil {
		return nil, err
	}
	out := make([]deadLetterView, 0, len(letters))
	for _, l := range letters {
		ev := json.RawMessage(l.Event)
		if !json.Valid(ev) {
			ev, _ = json.Marshal(string(l.Event)) // a malformed event, shown as text
		}
		devices := l.Devices
		if devices == nil {
			devices = []string{}
		}
		out = append(out, deadLetterView{l.Sequence, l.OriginalSubject, l.Reason, l.Deliveries, l.FailedAt.UTC().Format("2006-01-02T15:04:05.000Z07:00"), devices, ev})
	}
	return map[string]any{"deadLetters": out}, nil
}

func (s *Server) deadLetterAction(act func(DeadLetterStore, *request, uint64) error) handlerFunc {
	return func(r *request) (any, error) {
		dl, err := s.deadLetters()
		if err != nil {
			return nil, err
		}
		seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
		if err != nil || seq == 0 {
			return nil, invalidParameter("sequence: must be a positive integer, got %q", r.PathValue("seq"))
		}
		if err := act(dl, r, seq); err != nil {
			if errors.Is(err, event.ErrNoDeadLetter) {
				return nil, resourceNotFound("no dead letter %d", seq)
			}
			if errors.Is(err, event.ErrNoStreamForSubject) {
				return nil, invalidParameter("%s; it stays a dead letter until a stream takes that subject again", strings.TrimPrefix(err.Error(), "event: "))
			}
			return nil, err
		}
		return struct{}{}, nil
	}
}
