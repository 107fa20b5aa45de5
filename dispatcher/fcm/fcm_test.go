package fcm_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/dispatcher"
	"github.com/pushsync/pushsync/dispatcher/fcm"
	"github.com/pushsync/pushsync/dispatcher/fcm/fcmtest"
	"github.com/pushsync/pushsync/registry"
	"github.com/pushsync/pushsync/sync/event"
)

func newFixture(t *testing.T) (*fcmtest.Server, *fcm.Notifier, *registry.App) {
	t.Helper()
	s := fcmtest.NewServer()
	t.Cleanup(s.Close)
	sa, err := s.AddServiceAccount("demo-project")
	if err != nil {
		t.Fatal(err)
	}
	n, err := fcm.New(fcm.Options{Endpoint: s.Endpoint(), RootCAs: s.RootCAs(), TTL: time.Hour}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	app := &registry.App{Name: "android", Kind: registry.KindFCM, Revision: 1,
		FCM: &registry.FCMCredentials{ProjectID: "demo-project", ServiceAccount: string(sa)}}
	return s, n, app
}

func push(app *registry.App, token string, syncCount int64) *dispatcher.Push {
	return &dispatcher.Push{
		Event: &event.DatasetChanged{Version: 1, IdentityPoolID: "us-east-1:0f1e", IdentityID: "us-east-1:abc",
			DatasetName: "settings", SyncCount: syncCount, ChangedAt: time.Now()},
		Device: registry.Device{ID: "dev-1", Platform: registry.GCM, Token: token},
		App:    app,
	}
}

func TestSendsExactDataMessage(t *testing.T) {
	s, n, app := newFixture(t)
	if err := n.Notify(context.Background(), push(app, "fcm-registration-token-1", 12)); err != nil {
		t.Fatal(err)
	}
	got := s.Pushes()
	if len(got) != 1 {
		t.Fatalf("%d pushes", len(got))
	}
	p := got[0]
	want := `{"data":{"datasetName":"settings","identityId":"us-east-1:abc","identityPoolId":"us-east-1:0f1e","source":"cognito-sync","syncCount":"12"},"android":{"ttl":"3600s","collapse_key":"settings","priority":"normal"},"token":"fcm-registration-token-1"}`
	if string(p.Message) != want {
		t.Errorf("message\n got %s\nwant %s", p.Message, want)
	}
	if p.ProjectID != "demo-project" || p.Token != "fcm-registration-token-1" {
		t.Errorf("push %+v", p)
	}
}

// TestTTLIsClampedToFourWeeks: a push expiring more than four weeks ahead
// (a change time ahead of our clock, with a long push TTL) goes with FCM's
// largest TTL; a TTL over it is refused with 400 INVALID_ARGUMENT, and the
// push would be dropped as permanent.
func TestTTLIsClampedToFourWeeks(t *testing.T) {
	s, n, app := newFixture(t)
	p := push(app, "fcm-registration-token-ttl", 1)
	p.Expires = time.Now().Add(fcmtest.MaxTTL + 2*time.Hour)
	if err := n.Notify(context.Background(), p); err != nil {
		t.Fatalf("push expiring in four weeks and two hours: %v", err)
	}
	got := s.Pushes()
	if len(got) != 1 || !strings.Contains(string(got[0].Android), `"ttl":"2419200s"`) {
		t.Fatalf("pushes %+v, want one with android.ttl 2419200s", got)
	}
	// So does a push without an expiry when the configured TTL is longer.
	long, err := fcm.New(fcm.Options{Endpoint: s.Endpoint(), RootCAs: s.RootCAs(), TTL: 5 * 7 * 24 * time.Hour}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer long.Close()
	if err := long.Notify(context.Background(), push(app, "fcm-registration-token-ttl", 2)); err != nil {
		t.Fatalf("push with a TTL of five weeks: %v", err)
	}
	if got := s.Pushes(); len(got) != 2 || !strings.Contains(string(got[1].Android), `"ttl":"2419200s"`) {
		t.Fatalf("pushes %+v, want a second one with android.ttl 2419200s", got)
	}
}

func TestErrorsAreClassified(t *testing.T) {
	s, n, app := newFixture(t)
	s.FailToken("dead", fcmtest.Unregistered())
	s.FailToken("mismatch", fcmtest.SenderIDMismatch())
	s.FailToken("invalid", fcmtest.InvalidRegistration())
	s.FailToken("quota", fcmtest.QuotaExceeded(30*time.Second))
	s.FailToken("quota-no-retry-after", fcmtest.QuotaExceeded(0))
	// A 429 with no FCM error code: the SDK maps its status alone.
	s.FailToken("exhausted", fcmtest.Failure{HTTPStatus: 429, Status: "RESOURCE_EXHAUSTED", Message: "Resource has been exhausted"})
	s.FailToken("internal", fcmtest.Internal())
	s.FailToken("apns-auth", fcmtest.ThirdPartyAuthError())
	// An invalid field, with only a google.rpc.BadRequest detail.
	s.FailToken("bad-field", fcmtest.Failure{HTTPStatus: 400, Status: "INVALID_ARGUMENT", Field: "message.android.ttl",
		Message: "Invalid value at 'message.android.ttl'"})
	tests := []struct {
		token      string
		class      dispatcher.Class
		reason     string
		retryAfter time.Duration
	}{
		{"dead", dispatcher.TokenDead, "UNREGISTERED", 0},
		{"mismatch", dispatcher.TokenDead, "SENDER_ID_MISMATCH", 0},
		{"invalid", dispatcher.TokenDead, "INVALID_REGISTRATION", 0},
		{"quota", dispatcher.Retry, "QUOTA_EXCEEDED", 30 * time.Second},
		// FCM refuses until the quota's minute ends: tried again sooner,
		// the push is refused again and uses up a try.
		{"quota-no-retry-after", dispatcher.Retry, "QUOTA_EXCEEDED", fcm.QuotaBackoff},
		{"exhausted", dispatcher.Retry, "RESOURCE_EXHAUSTED", fcm.QuotaBackoff},
		{"internal", dispatcher.Retry, "INTERNAL", 0},
		{"apns-auth", dispatcher.Config, "THIRD_PARTY_AUTH_ERROR", 0},
		{"bad-field", dispatcher.Permanent, "INVALID_ARGUMENT", 0},
	}
	for _, tt := range tests {
		err := n.Notify(context.Background(), push(app, tt.token, 1))
		var pe *dispatcher.Error
		if !errors.As(err, &pe) || pe.Class != tt.class || pe.Reason != tt.reason || pe.RetryAfter != tt.retryAfter {
			t.Errorf("%s: got %v (retry after %v), want %s %s %v", tt.token, err, retryAfterOf(err), tt.class, tt.reason, tt.retryAfter)
		}
		// A token of another project is dead only if the app's project
		// is right.
		if pe != nil && pe.ForApp != (tt.reason == "SENDER_ID_MISMATCH") {
			t.Errorf("%s: ForApp %v", tt.token, pe.ForApp)
		}
	}
}

func retryAfterOf(err error) time.Duration {
	var pe *dispatcher.Error
	if errors.As(err, &pe) {
		return pe.RetryAfter
	}
	return -1
}

func TestUnavailableIsRetryable(t *testing.T) {
	s, n, app := newFixture(t)
	f := fcmtest.Unavailable()
	s.FailAll(&f)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	err := n.Notify(ctx, push(app, "fcm-registration-token-1", 1))
	var pe *dispatcher.Error
	if !errors.As(err, &pe) || pe.Class != dispatcher.Retry {
		t.Fatalf("got %v, want a retryable error", err)
	}
	if len(s.Pushes()) != 0 {
		t.Fatal("a push was recorded during the outage")
	}
}

// TestRetryAfterPastTheDeadlineEndsTheSend: FCM answers 503 with a
// Retry-After longer than the send has left. The firebase client would
// sleep it out until the deadline and report a bare timeout; the send ends
// at once instead, as a retry carrying FCM's Retry-After, so that the
// broker waits it out rather than a sender slot.
func TestRetryAfterPastTheDeadlineEndsTheSend(t *testing.T) {
	s, n, app := newFixture(t)
	f := fcmtest.Unavailable()
	f.RetryAfter = 30 * time.Second
	s.FailAll(&f)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	err := n.Notify(ctx, push(app, "fcm-registration-token-1", 1))
	took := time.Since(start)
	var pe *dispatcher.Error
	if !errors.As(err, &pe) || pe.Class != dispatcher.Retry || pe.Reason != "UNAVAILABLE" || pe.RetryAfter != 30*time.Second {
		t.Fatalf("got %v (retry after %v), want a retry for UNAVAILABLE after 30s", err, retryAfterOf(err))
	}
	if took > 2*time.Second {
		t.Errorf("the send took %v, want it to end as soon as FCM answered", took)
	}
	if st := s.Stats(); st.Requests != 1 {
		t.Errorf("%d requests, want 1", st.Requests)
	}

	// A Retry-After that fits in the time left is waited out by the
	// firebase client's own retries.
	s.ClearFailures()
	f.RetryAfter = time.Second
	f.Times = 1
	s.FailAll(&f)
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.Notify(ctx, push(app, "fcm-registration-token-1", 2)); err != nil {
		t.Fatalf("503 with a Retry-After of 1s, then accepted: %v", err)
	}
	if st := s.Stats(); st.Requests != 3 || st.Accepted != 1 {
		t.Errorf("%d requests and %d accepted, want 3 and 1: the short Retry-After waited in the client", st.Requests, st.Accepted)
	}
}

func TestWrongServiceAccountIsConfigError(t *testing.T) {
	s, n, app := newFixture(t)
	other := fcmtest.NewServer() // its key is unknown to s
	defer other.Close()
	sa, err := other.AddServiceAccount("demo-project")
	if err != nil {
		t.Fatal(err)
	}
	// The key file names s's token endpoint, which refuses the key, as
	// Google's refuses a deleted or revoked one.
	bad := *app
	bad.Name = "android-bad"
	bad.FCM = &registry.FCMCredentials{ProjectID: "demo-project", ServiceAccount: strings.Replace(string(sa), other.TokenURL(), s.TokenURL(), 1)}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = n.Notify(ctx, push(&bad, "fcm-registration-token-1", 1))
	var pe *dispatcher.Error
	if !errors.As(err, &pe) || pe.Class != dispatcher.Config || pe.Reason != "UNAUTHENTICATED" || !strings.Contains(err.Error(), "no access token for the service account") {
		t.Fatalf("got %v, want a configuration error naming the refused service account", err)
	}
	// Refused at once: not retried as if the network had failed.
	if st := s.Stats(); st.TokenRequests != 1 {
		t.Errorf("%d token requests for one push, want 1", st.TokenRequests)
	}
	if len(s.Pushes()) != 0 {
		t.Fatal("push accepted with a foreign service account")
	}
}

// TestTokenEndpointThrottlingIsRetried: Google's token endpoint throttles
// (429) or fails (5xx) a request for an access token. The service account
// may be fine: the push is retried after the endpoint's Retry-After, the
// app not suspended as if its credentials were refused, and no token is
// asked for again before the Retry-After ends, neither by the firebase
// client's own retries nor by the next pushes.
func TestTokenEndpointThrottlingIsRetried(t *testing.T) {
	s, n, app := newFixture(t)
	s.FailTokenRequests(&fcmtest.TokenFailure{HTTPStatus: 429, RetryAfter: 2 * time.Second})
	for i := 1; i <= 2; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := n.Notify(ctx, push(app, "fcm-registration-token-1", int64(i)))
		cancel()
		var pe *dispatcher.Error
		if !errors.As(err, &pe) || pe.Class != dispatcher.Retry || pe.Reason != "token_endpoint_unavailable" ||
			pe.RetryAfter <= 0 || pe.RetryAfter > 2*time.Second || (i == 1 && pe.RetryAfter != 2*time.Second) {
			t.Fatalf("push %d with the token endpoint answering 429 with Retry-After 2s: %v (retry after %v), want a retry for token_endpoint_unavailable within 2s", i, err, retryAfterOf(err))
		}
		if st := s.Stats(); st.TokenRequests != 1 {
			t.Fatalf("after push %d: %d token requests, want 1: none before the Retry-After ends", i, st.TokenRequests)
		}
	}
	s.FailTokenRequests(nil)
	time.Sleep(2 * time.Second) // the Retry-After
	if err := n.Notify(context.Background(), push(app, "fcm-registration-token-1", 3)); err != nil {
		t.Fatalf("push once the token endpoint issues tokens again: %v", err)
	}

	// A 5xx without a Retry-After holds token requests off for
	// TokenEndpointBackoff.
	other := *app
	other.Name = "android-2"
	s.FailTokenRequests(&fcmtest.TokenFailure{HTTPStatus: 503})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := n.Notify(ctx, push(&other, "fcm-registration-token-1", 4))
	var pe *dispatcher.Error
	if !errors.As(err, &pe) || pe.Class != dispatcher.Retry || pe.Reason != "token_endpoint_unavailable" || pe.RetryAfter != fcm.TokenEndpointBackoff {
		t.Fatalf("token endpoint answering 503: %v (retry after %v), want a retry for token_endpoint_unavailable after %v", err, retryAfterOf(err), fcm.TokenEndpointBackoff)
	}
	if st := s.Stats(); st.TokenRequests != 3 {
		t.Errorf("%d token requests in all, want 3: the 503 was asked once", st.TokenRequests)
	}
}

// TestStalePushUsesTheRotatedServiceAccount: after a rotation, a push read
// with the app's older revision (an event whose fan-out began before it)
// goes through the newer revision's client and its access token, rather
// than build the replaced service account's client again, and ask for a
// token, on every change between the two.
func TestStalePushUsesTheRotatedServiceAccount(t *testing.T) {
	s, n, app := newFixture(t)
	sa, err := s.AddServiceAccount("demo-project")
	if err != nil {
		t.Fatal(err)
	}
	rotated := *app
	rotated.FCM = &registry.FCMCredentials{ProjectID: "demo-project", ServiceAccount: string(sa)}
	rotated.Revision = 2
	for i, a := range []*registry.App{app, &rotated, app, app, &rotated} {
		if err := n.Notify(context.Background(), push(a, "fcm-registration-token-1", int64(i+1))); err != nil {
			t.Fatalf("push %d (revision %d): %v", i+1, a.Revision, err)
		}
	}
	if st := s.Stats(); st.TokenRequests != 2 {
		t.Errorf("%d token requests, want 2: one for each revision's service account", st.TokenRequests)
	}
}

// TestWrongProjectIsConfigError: a service account sending to a project it
// has no permission on gets 403 PERMISSION_DENIED without an FcmError
// detail: the app is misconfigured, and its devices are not dead.
func TestWrongProjectIsConfigError(t *testing.T) {
	s, n, app := newFixture(t)
	wrong := *app
	wrong.Name = "android-wrong-project"
	wrong.FCM = &registry.FCMCredentials{ProjectID: "another-project", ServiceAccount: app.FCM.ServiceAccount}
	err := n.Notify(context.Background(), push(&wrong, "fcm-registration-token-1", 1))
	var pe *dispatcher.Error
	if !errors.As(err, &pe) || pe.Class != dispatcher.Config || pe.Reason != "PERMISSION_DENIED" {
		t.Fatalf("service account of demo-project sending to another-project: %v, want a configuration error for PERMISSION_DENIED", err)
	}
	if len(s.Pushes()) != 0 {
		t.Fatal("push accepted for a project the service account has no permission on")
	}
}

// TestRevokedTokenIsReplaced: FCM refuses an access token before its
// expiry (revoked); that push is retried rather than the app suspended, and
// the next push asks for a new token rather than send the refused one until
// it expires.
func TestRevokedTokenIsReplaced(t *testing.T) {
	s, n, app := newFixture(t)
	if err := n.Notify(context.Background(), push(app, "fcm-registration-token-1", 1)); err != nil {
		t.Fatal(err)
	}
	s.ExpireTokens()
	err := n.Notify(context.Background(), push(app, "fcm-registration-token-1", 2))
	var pe *dispatcher.Error
	if !errors.As(err, &pe) || pe.Class != dispatcher.Retry || pe.Reason != "UNAUTHENTICATED" {
		t.Fatalf("push with a revoked token: %v, want a retry for UNAUTHENTICATED", err)
	}
	if err := n.Notify(context.Background(), push(app, "fcm-registration-token-1", 3)); err != nil {
		t.Fatalf("the push after the 401: %v", err)
	}
	if st := s.Stats(); st.TokensIssued != 2 {
		t.Errorf("%d tokens issued, want 2: one before and one after the revocation", st.TokensIssued)
	}
}

// TestRefusedFreshTokenIsConfigError: FCM refuses the access token issued
// right after it refused the previous one, so the credentials themselves
// are bad: that is a configuration error, as long as no token has been
// accepted since; once one has, a refusal is a revoked token again.
func TestRefusedFreshTokenIsConfigError(t *testing.T) {
	s, n, app := newFixture(t)
	s.FailAll(&fcmtest.Failure{HTTPStatus: 401, Status: "UNAUTHENTICATED"})
	wantClass := []dispatcher.Class{dispatcher.Retry, dispatcher.Config, dispatcher.Config}
	for i, want := range wantClass {
		err := n.Notify(context.Background(), push(app, "fcm-registration-token-1", int64(i+1)))
		var pe *dispatcher.Error
		if !errors.As(err, &pe) || pe.Class != want || pe.Reason != "UNAUTHENTICATED" {
			t.Fatalf("refusal %d: %v, want %s UNAUTHENTICATED", i+1, err, want)
		}
	}
	if st := s.Stats(); st.TokensIssued != 3 {
		t.Errorf("%d tokens issued for three refused pushes, want 3: a new one after each refusal", st.TokensIssued)
	}
	s.ClearFailures()
	if err := n.Notify(context.Background(), push(app, "fcm-registration-token-1", 4)); err != nil {
		t.Fatalf("push once FCM takes the credentials again: %v", err)
	}
	s.ExpireTokens()
	err := n.Notify(context.Background(), push(app, "fcm-registration-token-1", 5))
	var pe *dispatcher.Error
	if !errors.As(err, &pe) || pe.Class != dispatcher.Retry || pe.Reason != "UNAUTHENTICATED" {
		t.Fatalf("push with a revoked token after one was accepted: %v, want a retry for UNAUTHENTICATED", err)
	}
}

// TestThirdPartyAuthErrorKeepsTheAccessToken: FCM answers 401 with
// THIRD_PARTY_AUTH_ERROR when APNs refused the APNs key of the Firebase
// project, for an iOS device reached through FCM. FCM took the access
// token: each such push is reported as what it is, a configuration error
// naming the third party, and the token is kept, rather than replaced
// after each one and the service account itself blamed from the second.
func TestThirdPartyAuthErrorKeepsTheAccessToken(t *testing.T) {
	s, n, app := newFixture(t)
	s.FailToken("ios-through-fcm", fcmtest.ThirdPartyAuthError())
	for i := range 3 {
		err := n.Notify(context.Background(), push(app, "ios-through-fcm", int64(i+1)))
		var pe *dispatcher.Error
		if !errors.As(err, &pe) || pe.Class != dispatcher.Config || pe.Reason != "THIRD_PARTY_AUTH_ERROR" {
			t.Fatalf("push %d refused for the project's APNs key: %v, want a configuration error for THIRD_PARTY_AUTH_ERROR", i+1, err)
		}
	}
	if err := n.Notify(context.Background(), push(app, "fcm-registration-token-1", 4)); err != nil {
		t.Fatalf("push to an Android device after them: %v", err)
	}
	if st := s.Stats(); st.TokensIssued != 1 || st.TokenRequests != 1 {
		t.Errorf("%d token requests and %d tokens issued for four pushes FCM authenticated, want 1 and 1", st.TokenRequests, st.TokensIssued)
	}
}

func TestOneConnectionAndOneTokenForAFanOut(t *testing.T) {
	s, n, app := newFixture(t)
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.Notify(context.Background(), push(app, fmt.Sprintf("fcm-registration-token-%d", i), 1)); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.Accepted != 200 || st.TokensIssued != 1 {
		t.Fatalf("accepted %d with %d OAuth tokens, want 200 with 1", st.Accepted, st.TokensIssued)
	}
	if st.Connections > 2 {
		t.Fatalf("a cold fan-out of 200 (within the 250 streams the server allows per connection) opened %d connections", st.Connections)
	}
}
