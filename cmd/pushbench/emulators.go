package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pushsync/pushsync/cmd/internal/emufeed"
	"github.com/pushsync/pushsync/dispatcher/apns/apnstest"
	"github.com/pushsync/pushsync/dispatcher/fcm/fcmtest"
)

// Identifiers of the in-process emulators' credentials.
const (
	apnsTeam   = "BENCHTEAM1"
	apnsKeyID  = "BENCHKEY01"
	apnsTopic  = "com.example.pushbench"
	fcmProject = "pushbench"
)

// emulators are where the pushes go: the APNs and FCM emulators, in this
// process or in a pushemu process, and the files a client of theirs needs.
type emulators struct {
	apnsURL, fcmEndpoint                    string
	keyID, teamID, projectID                string
	caFile, authKeyFile, serviceAccountFile string
	// pid is the process serving them when its CPU time can be read here:
	// this one, or pushemu on the same machine; 0 otherwise.
	pid int
	// feed is set when pushes arrive through pushemu's feed, after the
	// emulators answered them.
	feed    bool
	feedErr atomic.Value // why the pushemu feed ended early
	close   func()
}

// pushSink receives each push an emulator accepted: the change it
// carries and the device it went to.
type pushSink func(identity, token string, syncCount int64, at time.Time)

// apns passes on an APNs push by its payload.
func (sink pushSink) apns(token string, payload []byte, at time.Time) {
	id, count := apnsChange(payload)
	sink(id, token, count, at)
}

// fcm passes on an FCM push by its data.
func (sink pushSink) fcm(token string, data map[string]string, at time.Time) {
	count, _ := strconv.ParseInt(data["syncCount"], 10, 64)
	sink(data["identityId"], token, count, at)
}

// startEmulators starts the emulators in this process and writes their
// authority and credentials into dir.
func startEmulators(dir string, sink pushSink) (*emulators, error) {
	apnsEmu, err := apnstest.Start(apnstest.WithRecord(false), apnstest.WithOnPush(func(p apnstest.Push) {
		sink.apns(p.DeviceToken, p.Payload, time.Now())
	}))
	if err != nil {
		return nil, fmt.Errorf("APNs emulator: %w", err)
	}
	fcmEmu, err := fcmtest.Start(fcmtest.WithRecord(false), fcmtest.WithOnPush(func(p fcmtest.Push) {
		sink.fcm(p.Token, p.Data, time.Now())
	}))
	if err != nil {
		apnsEmu.Close()
		return nil, fmt.Errorf("FCM emulator: %w", err)
	}
	e := &emulators{
		apnsURL: apnsEmu.URL, fcmEndpoint: fcmEmu.Endpoint(), keyID: apnsKeyID, teamID: apnsTeam, projectID: fcmProject,
		caFile:             filepath.Join(dir, "ca.pem"),
		authKeyFile:        filepath.Join(dir, "apns-authkey.p8"),
		serviceAccountFile: filepath.Join(dir, "fcm-service-account.json"),
		pid:                os.Getpid(),
		close:              func() { apnsEmu.Close(); fcmEmu.Close() },
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err == nil {
		err = e.writeCredentials(key, apnsEmu, fcmEmu)
	}
	if err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

func (e *emulators) writeCredentials(key *ecdsa.PrivateKey, apnsEmu *apnstest.Server, fcmEmu *fcmtest.Server) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	apnsEmu.AddTokenKey(apnsTeam, apnsKeyID, &key.PublicKey, apnsTopic)
	sa, err := fcmEmu.AddServiceAccount(fcmProject)
	if err != nil {
		return err
	}
	for path, data := range map[string][]byte{
		e.caFile:             append(apnsEmu.CACertPEM(), fcmEmu.CACertPEM()...),
		e.authKeyFile:        pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		e.serviceAccountFile: sa,
	} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// followPushemu uses the emulators of the pushemu that wrote pushemuDir,
// following its push feed until close. The authorities go into dir.
func followPushemu(dir, pushemuDir string, sink pushSink) (*emulators, error) {
	m, err := emufeed.ReadManifest(pushemuDir)
	if err != nil {
		return nil, fmt.Errorf("-emulators: %w", err)
	}
	if m.Feed == "" {
		return nil, errors.New("-emulators: that pushemu runs without its push feed (-feed-addr), which pushbench needs to see the pushes arrive")
	}
	e := &emulators{
		apnsURL: m.APNs, fcmEndpoint: m.FCMEndpoint, keyID: m.APNsKeyID, teamID: m.APNsTeamID, projectID: m.FCMProjectID,
		caFile:             filepath.Join(dir, "ca.pem"),
		authKeyFile:        filepath.Join(pushemuDir, "apns-authkey.p8"),
		serviceAccountFile: filepath.Join(pushemuDir, "fcm-service-account.json"),
		pid:                localPushemu(m.PID),
		feed:               true,
	}
	var ca []byte
	for _, name := range []string{"apns-ca.pem", "fcm-ca.pem"} {
		b, err := os.ReadFile(filepath.Join(pushemuDir, name))
		if err != nil {
			return nil, fmt.Errorf("-emulators: %w", err)
		}
		ca = append(ca, b...)
	}
	if err := os.WriteFile(e.caFile, ca, 0o600); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready, ended := make(chan struct{}), make(chan error, 1)
	go func() {
		ended <- emufeed.Follow(ctx, m.Feed, func() { close(ready) }, func(l *emufeed.Line) error {
			switch l.Service {
			case "apns":
				sink.apns(l.Token, l.Payload, l.ReceivedAt)
			case "fcm":
				sink.fcm(l.Token, l.Data, l.ReceivedAt)
			}
			return nil
		})
	}()
	select {
	case <-ready:
	case err := <-ended:
		cancel()
		return nil, fmt.Errorf("-emulators: %w", err)
	case <-time.After(10 * time.Second):
		cancel()
		return nil, fmt.Errorf("-emulators: the push feed %s did not answer in 10s", m.Feed)
	}
	go func() {
		if err := <-ended; err != nil {
			e.feedErr.Store(err)
		}
	}()
	e.close = cancel
	return e, nil
}

// localPushemu returns pid if it is a pushemu process on this machine.
func localPushemu(pid int) int {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if pid <= 0 || err != nil {
		return 0
	}
	argv0, _, _ := strings.Cut(string(cmdline), "\x00")
	if !strings.Contains(filepath.Base(argv0), "pushemu") {
		return 0
	}
	return pid
}

// err says why the emulators can no longer be followed, if they cannot.
func (e *emulators) err() error {
	if err, ok := e.feedErr.Load().(error); ok {
		return err
	}
	return nil
}
