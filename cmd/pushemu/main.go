// Command pushemu runs the APNs and FCM emulators as one process, for demos,
// load tests and manual testing of pushsyncd without Apple or Google.
//
//	pushemu [-dir pushemu-creds] [-apns-addr 127.0.0.1:2197] [-apns-sandbox-addr 127.0.0.1:2198] [-fcm-addr 127.0.0.1:4443] [-feed-addr 127.0.0.1:2199] [-new-credentials]
//
// It serves APNs production and sandbox (HTTP/2 over TLS) and the FCM HTTP
// v1 API with its OAuth2 token endpoint, each with a certificate from its
// authority that names localhost, the loopback addresses, the listen
// addresses and the -hosts names. In -dir it keeps what a client needs: the authorities
// (apns-ca.pem, fcm-ca.pem), an APNs signing key the emulators accept for
// any topic (apns-authkey.p8, with its ids in apns.json) and an FCM
// service-account key file (fcm-service-account.json); beside them the
// authorities' keys (apns-ca-key.pem, fcm-ca-key.pem) and the server
// certificates (apns-server.pem, fcm-server.pem, with their keys). Started
// again on the same -dir it reuses them, so that a pushsyncd and the
// platform apps set up with them keep working, and makes only what is not
// there; it refuses to start, saying which file and what is wrong, when
// what is there cannot be used, rather than replace what pushsyncd and its
// apps may hold (-new-credentials replaces everything). A server
// certificate that does not fit (another -hosts, an expired one) is issued
// again by its authority, which clients go on trusting. At every start it
// writes pushsyncd.yaml, a configuration that points pushsyncd at the
// emulators, and emulators.json, every address and identifier above for
// programs (pushbench -emulators reads it; see emufeed.Manifest). Each
// emulator also
// serves a JSON control API under /_emulator/ (pushes, stats, failures).
// The push feed, plain HTTP on -feed-addr, streams every accepted push as
// it arrives to each client of GET /pushes, one JSON object a line with its
// arrival time (see emufeed.Line).
// Every push received is logged unless -quiet is set.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/cmd/internal/emufeed"
	"github.com/pushsync/pushsync/dispatcher/apns/apnstest"
	"github.com/pushsync/pushsync/dispatcher/fcm/fcmtest"
	"github.com/pushsync/pushsync/internal/emutls"
)

// Identifiers of the signing key pushemu issues.
const (
	TeamID    = "PUSHEMU001"
	KeyID     = "PUSHEMUKEY"
	ProjectID = "pushemu"
)

// defaultGCPercent is the collector's target when GOGC is not set, as in
// pushbench's own emulators: every push allocates a little over a small
// live heap, and collecting a quarter as often takes a fifth off the
// emulators' CPU per push (docs/performance.md), which in a load test on
// one machine is CPU the system under test gets back.
const defaultGCPercent = 400

func main() {
	if _, ok := os.LookupEnv("GOGC"); !ok {
		debug.SetGCPercent(defaultGCPercent)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr, nil); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // asked for the usage, and given it
		}
		fmt.Fprintln(os.Stderr, "pushemu:", err)
		os.Exit(1)
	}
}

// Addrs are the URLs the emulators serve, and the feed's (empty when off).
type Addrs struct{ APNs, APNsSandbox, FCM, Feed string }

func run(ctx context.Context, args []string, stderr io.Writer, ready func(Addrs)) error {
	fs := flag.NewFlagSet("pushemu", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "pushemu-creds", "directory of the CA certificates, keys and service account, reused from an earlier start when there, and of pushsyncd.yaml, written at every start")
	apnsAddr := fs.String("apns-addr", "127.0.0.1:2197", "listen address of the APNs production emulator")
	sandboxAddr := fs.String("apns-sandbox-addr", "127.0.0.1:2198", "listen address of the APNs sandbox emulator")
	fcmAddr := fs.String("fcm-addr", "127.0.0.1:4443", "listen address of the FCM emulator")
	hosts := fs.String("hosts", "", "extra comma-separated host names for the certificates, which name localhost, the loopback addresses and the listen addresses (for containers)")
	quiet := fs.Bool("quiet", false, "do not log every push (for load tests)")
	record := fs.Bool("record", true, "keep received pushes in memory for GET /_emulator/pushes")
	tokenCheck := fs.Bool("fcm-token-check", true, "refuse FCM registration tokens that do not look like those FCM issues, as FCM does")
	feedAddr := fs.String("feed-addr", "127.0.0.1:2199", "listen address of the push feed (plain HTTP, GET /pushes); empty: no feed")
	fresh := fs.Bool("new-credentials", false, "make new CAs, APNs signing key and FCM service account, replacing those in -dir (then restart pushsyncd, and give its apps the new keys with pushsyncctl app rotate)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	log := zerolog.New(zerolog.ConsoleWriter{Out: stderr, TimeFormat: time.TimeOnly, NoColor: true}).With().Timestamp().Logger()
	var extra []string
	if *hosts != "" {
		extra = strings.Split(*hosts, ",")
	}
	// The certificates name the extra hosts, and the addresses the
	// emulators listen on, which their URLs carry.
	certHosts := append(append([]string{}, extra...), listenIPs(*apnsAddr, *sandboxAddr, *fcmAddr)...)
	creds, err := loadCredentials(*dir, certHosts, *fresh, &log)
	if err != nil {
		return err
	}

	pushes := &emufeed.Feed{}
	apnsHook := func(env string) apnstest.Option {
		return apnstest.WithOnPush(func(p apnstest.Push) {
			pushes.APNs(p)
			if !*quiet {
				log.Info().Str("service", "APNs "+env).Str("token", p.DeviceToken).Str("topic", p.Topic).RawJSON("payload", p.Payload).Msg("push")
			}
		})
	}
	prod, err := apnstest.Start(apnstest.WithAddr(*apnsAddr), apnstest.WithIdentity(creds.apns), apnstest.WithRecord(*record), apnsHook(apnstest.EnvironmentProduction))
	if err != nil {
		return fmt.Errorf("APNs emulator: %w", err)
	}
	defer prod.Close()
	sandbox, err := apnstest.Start(apnstest.WithAddr(*sandboxAddr), apnstest.WithIdentity(creds.apns), apnstest.WithRecord(*record),
		apnstest.WithEnvironment(apnstest.EnvironmentDevelopment), apnsHook(apnstest.EnvironmentDevelopment))
	if err != nil {
		return fmt.Errorf("APNs sandbox emulator: %w", err)
	}
	defer sandbox.Close()
	fcmEmu, err := fcmtest.Start(fcmtest.WithAddr(*fcmAddr), fcmtest.WithIdentity(creds.fcm), fcmtest.WithRecord(*record),
		fcmtest.WithTokenCheck(*tokenCheck), fcmtest.WithOnPush(func(p fcmtest.Push) {
			pushes.FCM(p)
			if !*quiet {
				log.Info().Str("service", "FCM").Str("project", p.ProjectID).Str("token", p.Token).Any("data", p.Data).Msg("push")
			}
		}))
	if err != nil {
		return fmt.Errorf("FCM emulator: %w", err)
	}
	defer fcmEmu.Close()

	prod.AddTokenKey(TeamID, KeyID, &creds.authKey.PublicKey) // no topics: any topic
	sandbox.AddTokenKey(TeamID, KeyID, &creds.authKey.PublicKey)
	tokenURI := fcmEmu.TokenURL()
	if len(extra) > 0 {
		// Clients in other containers reach the token endpoint by the
		// first extra host name, not by the listen address.
		tokenURI = "https://" + net.JoinHostPort(extra[0], fcmEmu.URL[strings.LastIndex(fcmEmu.URL, ":")+1:]) + "/token"
	}
	if err := creds.addServiceAccount(fcmEmu, tokenURI); err != nil {
		return err
	}
	addrs := Addrs{APNs: prod.URL, APNsSandbox: sandbox.URL, FCM: fcmEmu.URL}
	if *feedAddr != "" {
		ln, err := net.Listen("tcp", *feedAddr)
		if err != nil {
			return fmt.Errorf("feed: %w", err)
		}
		srv := &http.Server{Handler: pushes, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		addrs.Feed = "http://" + emutls.URLHost(ln.Addr()) + "/pushes"
	}
	creds.report(*fresh)
	if err := writeCredentials(creds, prod, sandbox, fcmEmu); err != nil {
		return err
	}
	m := emufeed.Manifest{
		APNs: prod.URL, APNsSandbox: sandbox.URL, FCM: fcmEmu.URL, FCMEndpoint: fcmEmu.Endpoint(), Feed: addrs.Feed,
		APNsKeyID: KeyID, APNsTeamID: TeamID, FCMProjectID: ProjectID, PID: os.Getpid(),
	}
	if len(extra) > 0 {
		// Programs elsewhere reach the emulators by the first extra
		// host name, which the certificates carry.
		reachableAs(&m, extra[0])
	}
	if err := m.Write(*dir); err != nil {
		return err
	}
	log.Info().Str("apns", addrs.APNs).Str("apns_sandbox", addrs.APNsSandbox).Str("fcm", addrs.FCM).Str("feed", addrs.Feed).Str("dir", *dir).
		Msg("emulators running; credentials, pushsyncd.yaml and emulators.json in dir")
	if ready != nil {
		ready(addrs)
	}
	<-ctx.Done()
	return nil
}

// writeCredentials writes into -dir the credentials made at this start,
// and the files that say where the emulators are.
func writeCredentials(creds *credentials, prod, sandbox *apnstest.Server, fcmEmu *fcmtest.Server) error {
	apnsInfo, _ := json.MarshalIndent(map[string]string{
		"keyId": KeyID, "teamId": TeamID, "productionHost": prod.URL, "sandboxHost": sandbox.URL,
	}, "", "  ")
	config := fmt.Sprintf(`# pushsyncd settings for the pushemu emulators; merge with your own.
apns:
  production_host: %s
  sandbox_host: %s
  root_ca_file: apns-ca.pem
fcm:
  endpoint: %s
  root_ca_file: fcm-ca.pem
`, prod.URL, sandbox.URL, fcmEmu.Endpoint())
	return creds.write(map[string][]byte{
		"apns.json":      append(apnsInfo, '\n'),
		"pushsyncd.yaml": []byte(config),
	})
}

// listenIPs returns the IP addresses of listen addresses that the
// emulators' URLs name (see emutls.URLHost) and that certificates do not
// carry already: not those of every interface nor 127.0.0.1 and ::1. An
// address that does not resolve is left to fail when listened on.
func listenIPs(addrs ...string) []string {
	var ips []string
	for _, a := range addrs {
		ta, err := net.ResolveTCPAddr("tcp", a)
		if err != nil || ta.IP == nil || ta.IP.IsUnspecified() || ta.IP.Equal(net.IPv4(127, 0, 0, 1)) || ta.IP.Equal(net.IPv6loopback) {
			continue
		}
		if ip := ta.IP.String(); !slices.Contains(ips, ip) {
			ips = append(ips, ip)
		}
	}
	return ips
}

// reachableAs names host in every URL of m, keeping the ports.
func reachableAs(m *emufeed.Manifest, host string) {
	for _, u := range []*string{&m.APNs, &m.APNsSandbox, &m.FCM, &m.FCMEndpoint, &m.Feed} {
		if p, err := url.Parse(*u); err == nil && *u != "" {
			p.Host = net.JoinHostPort(host, p.Port())
			*u = p.String()
		}
	}
}
