// Package emufeed lets a program elsewhere follow the pushes that pushemu's
// emulators accept, as they arrive, and find the emulators: the push feed
// (served by pushemu, followed by pushbench) and emulators.json, the file
// pushemu writes beside the credentials it issues.
package emufeed

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/pushsync/pushsync/dispatcher/apns/apnstest"
	"github.com/pushsync/pushsync/dispatcher/fcm/fcmtest"
)

// ManifestFile is the name of the manifest in pushemu's directory.
const ManifestFile = "emulators.json"

// Manifest is emulators.json: where the emulators are and the identifiers
// of the credentials written beside it (apns-authkey.p8,
// fcm-service-account.json, apns-ca.pem, fcm-ca.pem).
type Manifest struct {
	APNs        string `json:"apns"`
	APNsSandbox string `json:"apnsSandbox"`
	FCM         string `json:"fcm"`
	// FCMEndpoint is the base URL of the FCM HTTP v1 API, for fcm.endpoint.
	FCMEndpoint string `json:"fcmEndpoint"`
	// Feed is the URL of the push feed, empty when it is off.
	Feed string `json:"feed,omitempty"`
	// The APNs signing key's ids (any topic is accepted) and the FCM
	// service account's project.
	APNsKeyID    string `json:"apnsKeyId"`
	APNsTeamID   string `json:"apnsTeamId"`
	FCMProjectID string `json:"fcmProjectId"`
	// PID is pushemu's process id, for reading its CPU time on the same
	// machine.
	PID int `json:"pid"`
}

// Write writes m into dir as ManifestFile, whole or not at all: a reader
// never sees half of it.
func (m *Manifest) Write(dir string) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return WriteFile(dir, ManifestFile, append(b, '\n'))
}

// WriteFile writes data into dir as name, readable by the owner only,
// whole or not at all: a reader never sees half of it, and a write cut
// short leaves the file as it was.
func WriteFile(dir, name string, data []byte) error {
	tmp, err := os.CreateTemp(dir, name+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, name))
}

// ReadManifest reads the manifest pushemu wrote into dir.
func ReadManifest(dir string) (*Manifest, error) {
	path := filepath.Join(dir, ManifestFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w (is it the -dir of a running pushemu?)", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if m.APNs == "" || m.FCMEndpoint == "" || m.APNsKeyID == "" || m.APNsTeamID == "" || m.FCMProjectID == "" {
		return nil, fmt.Errorf("%s: incomplete: it needs apns, fcmEndpoint, apnsKeyId, apnsTeamId and fcmProjectId", path)
	}
	return &m, nil
}

// Line is one line of the feed: a push one of the emulators accepted, with
// the time it arrived. APNs pushes carry Environment, Topic and Payload;
// FCM pushes carry ProjectID and Data. A follower that fell too far behind
// gets a last line with only ReceivedAt and Error set.
type Line struct {
	ReceivedAt  time.Time         `json:"receivedAt"`
	Service     string            `json:"service,omitempty"` // "apns" or "fcm"
	Environment string            `json:"environment,omitempty"`
	Token       string            `json:"token,omitempty"`
	Topic       string            `json:"topic,omitempty"`
	Payload     json.RawMessage   `json:"payload,omitempty"`
	ProjectID   string            `json:"projectId,omitempty"`
	Data        map[string]string `json:"data,omitempty"`
	Error       string            `json:"error,omitempty"`
}

// DefaultMaxBacklog is how far, in bytes of lines, a follower may fall
// behind before the feed cuts it off.
const DefaultMaxBacklog = 64 << 20

// Feed streams every push the emulators accept to the HTTP clients
// following it (GET /pushes), one JSON line each. The emulators never wait
// for a follower: each has a backlog of its own, written in batches, and
// one that falls more than MaxBacklog behind is cut off with an error line.
// Pushes are only encoded while someone follows.
type Feed struct {
	// MaxBacklog overrides DefaultMaxBacklog when positive.
	MaxBacklog int

	mu        sync.Mutex
	followers map[*follower]struct{}
}

type follower struct {
	wake     chan struct{}
	buf      []byte // lines not yet written; guarded by Feed.mu
	overflow int    // lines dropped since buf filled up; guarded by Feed.mu
}

// APNs publishes a push an APNs emulator accepted; use it in
// apnstest.WithOnPush.
func (f *Feed) APNs(p apnstest.Push) {
	f.publish(Line{ReceivedAt: time.Now(), Service: "apns", Environment: p.Environment, Token: p.DeviceToken, Topic: p.Topic, Payload: p.Payload})
}

// FCM publishes a push the FCM emulator accepted; use it in
// fcmtest.WithOnPush.
func (f *Feed) FCM(p fcmtest.Push) {
	f.publish(Line{ReceivedAt: time.Now(), Service: "fcm", ProjectID: p.ProjectID, Token: p.Token, Data: p.Data})
}

func (f *Feed) publish(l Line) {
	f.mu.Lock()
	none := len(f.followers) == 0
	f.mu.Unlock()
	if none {
		return
	}
	if !json.Valid(l.Payload) {
		l.Payload = nil
	}
	line, err := json.Marshal(l)
	if err != nil {
		return
	}
	line = append(line, '\n')
	limit := f.MaxBacklog
	if limit <= 0 {
		limit = DefaultMaxBacklog
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for fl := range f.followers {
		if fl.overflow > 0 || len(fl.buf)+len(line) > limit {
			fl.overflow++
		} else {
			fl.buf = append(fl.buf, line...)
		}
		select {
		case fl.wake <- struct{}{}:
		default:
		}
	}
}

// ServeHTTP streams pushes to one follower, from the moment it asked,
// until it goes away.
func (f *Feed) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || r.URL.Path != "/pushes" {
		http.Error(w, "the feed is GET /pushes", http.StatusNotFound)
		return
	}
	fl := &follower{wake: make(chan struct{}, 1)}
	f.mu.Lock()
	if f.followers == nil {
		f.followers = make(map[*follower]struct{})
	}
	f.followers[fl] = struct{}{}
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.followers, fl)
		f.mu.Unlock()
	}()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	if err := rc.Flush(); err != nil {
		return
	}
	var out []byte
	for {
		select {
		case <-r.Context().Done():
			return
		case <-fl.wake:
		}
		f.mu.Lock()
		out, fl.buf = fl.buf, out[:0]
		overflow := fl.overflow
		f.mu.Unlock()
		if overflow > 0 {
			b, _ := json.Marshal(Line{ReceivedAt: time.Now(), Error: "the follower fell " + strconv.Itoa(len(out)) +
				" bytes behind; " + strconv.Itoa(overflow) + " pushes or more were not sent to it"})
			out = append(append(out, b...), '\n')
		}
		if _, err := w.Write(out); err != nil {
			return
		}
		if err := rc.Flush(); err != nil || overflow > 0 {
			return
		}
	}
}

// Follow reads the feed at url and calls fn with each line, from when the
// feed answered (ready, if not nil, is called then) until ctx ends, fn
// returns an error, the feed reports that this follower fell behind, or the
// connection breaks. It returns nil only when ctx ended.
func Follow(ctx context.Context, url string, ready func(), fn func(*Line) error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("push feed: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 512))
		return fmt.Errorf("push feed %s: %s: %s", url, res.Status, b)
	}
	if ready != nil {
		ready()
	}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var l Line
	for sc.Scan() {
		l = Line{}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return fmt.Errorf("push feed: a line is not a push: %w", err)
		}
		if l.Error != "" {
			return fmt.Errorf("push feed: %s", l.Error)
		}
		if err := fn(&l); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("push feed: %w", err)
	}
	return errors.New("push feed: the emulators closed it")
}
