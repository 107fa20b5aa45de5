package registry

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pushsync/pushsync/internal/testenv"
)

const (
	layoutPool     = "us-east-1:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
	layoutIdentity = "us-east-1:11111111-2222-3333-4444-555555555555"
)

// layoutRegistry is a registry on the test Redis whose clock moves a
// second on every reading, starting at start.
func layoutRegistry(t testing.TB, start time.Time) (*Registry, *redis.Client, string) {
	rdb, prefix := testenv.Redis(t)
	at := start.Add(-time.Second)
	r := New(rdb, Options{KeyPrefix: prefix, Now: func() time.Time { at = at.Add(time.Second); return at }})
	return r, rdb, r.identityKey(layoutPool, layoutIdentity)
}

// fcmToken is an FCM registration token of the usual length, 163
// characters, distinct per n.
func fcmToken(n int) string {
	body := fmt.Sprintf("APA91b%0145x", uint64(n)*0x9e3779b97f4a7c15)
	return fmt.Sprintf("%011x", n) + ":" + body[:151]
}

func TestDeviceRecordLayout(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	r, rdb, key := layoutRegistry(t, t0)
	ctx := context.Background()
	apns := strings.Repeat("ab12", 16)
	rawAPNs := strings.Repeat("\xab\x12", 16) // as the record holds it
	pipe := "inst:APA91b|with|pipes"
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	record := func(id string) string {
		t.Helper()
		v, err := rdb.HGet(ctx, key, "d:"+id).Result()
		must(err)
		return v
	}
	ms36 := func(at time.Time) string { return strconv.FormatInt(at.UnixMilli(), 36) }

	a, _, err := r.RegisterDevice(ctx, layoutPool, layoutIdentity, APNSSandbox, apns)
	must(err)
	g, _, err := r.RegisterDevice(ctx, layoutPool, layoutIdentity, GCM, pipe)
	must(err)
	if got, want := record(a.ID), "S|"+ms36(t0)+"||"+rawAPNs; got != want {
		t.Fatalf("APNs record %q, want %q", got, want)
	}
	if got, want := record(g.ID), "G|"+ms36(t0.Add(time.Second))+"||"+pipe; got != want {
		t.Fatalf("FCM record %q, want %q", got, want)
	}
	// A token with '|' is found again, and read back whole.
	again, created, err := r.RegisterDevice(ctx, layoutPool, layoutIdentity, GCM, pipe)
	if err != nil || created || again.ID != g.ID || again.Token != pipe || !again.RegisteredAt.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("registering the | token again: %+v created=%v %v", again, created, err)
	}
	if got, want := record(g.ID), "G|"+ms36(t0.Add(2*time.Second))+"||"+pipe; got != want {
		t.Fatalf("FCM record registered again %q, want %q", got, want)
	}
	if d, err := r.Device(ctx, layoutPool, layoutIdentity, g.ID); err != nil || d.Token != pipe || d.Platform != GCM {
		t.Fatalf("Device: %+v %v", d, err)
	}

	// "set" is a prefix of "settings": the scripts must not confuse them.
	for _, ds := range []string{"settings", "game.v2", "set"} {
		must(r.Subscribe(ctx, layoutPool, layoutIdentity, ds, g.ID))
	}
	must(r.Subscribe(ctx, layoutPool, layoutIdentity, "settings", g.ID))
	must(r.Subscribe(ctx, layoutPool, layoutIdentity, "settings", a.ID))
	must(r.RecordSent(ctx, layoutPool, layoutIdentity, "settings", 12, []string{g.ID, a.ID}, time.Time{}, 0))
	must(r.RecordSent(ctx, layoutPool, layoutIdentity, "settings", 9, []string{g.ID}, time.Time{}, 0))
	must(r.RecordSent(ctx, layoutPool, layoutIdentity, "set", 3, []string{g.ID, a.ID}, time.Time{}, 0))
	must(r.Subscribe(ctx, layoutPool, layoutIdentity, "settings", g.ID)) // keeps the count
	if got, want := record(g.ID), "G|"+ms36(t0.Add(2*time.Second))+"|settings=12 game.v2=0 set=3|"+pipe; got != want {
		t.Fatalf("FCM record %q, want %q", got, want)
	}
	if got, want := record(a.ID), "S|"+ms36(t0)+"|settings=12|"+rawAPNs; got != want {
		t.Fatalf("APNs record %q, want %q", got, want)
	}
	reg, err := r.Registration(ctx, layoutPool, layoutIdentity)
	must(err)
	if got := fmt.Sprint(reg.Subscriptions); got != fmt.Sprintf("map[game.v2:[%s] set:[%s] settings:[%s %s]]", g.ID, g.ID, a.ID, g.ID) {
		t.Fatalf("subscriptions %s", got)
	}
	wantSent := map[string]int64{SentKey(a.ID, "settings"): 12, SentKey(g.ID, "settings"): 12, SentKey(g.ID, "set"): 3}
	if fmt.Sprint(reg.Sent) != fmt.Sprint(wantSent) {
		t.Fatalf("sent %v, want %v", reg.Sent, wantSent)
	}

	// Unsubscribing from the middle, the end and the start of the list.
	must(r.Unsubscribe(ctx, layoutPool, layoutIdentity, "game.v2", g.ID))
	if got := record(g.ID); !strings.Contains(got, "|settings=12 set=3|") {
		t.Fatalf("after unsubscribing the middle: %q", got)
	}
	must(r.Unsubscribe(ctx, layoutPool, layoutIdentity, "set", g.ID))
	if err := r.Unsubscribe(ctx, layoutPool, layoutIdentity, "set", g.ID); !errors.Is(err, ErrNotSubscribed) {
		t.Fatalf("unsubscribing twice: %v", err)
	}
	if err := r.Unsubscribe(ctx, layoutPool, layoutIdentity, "setting", g.ID); !errors.Is(err, ErrNotSubscribed) {
		t.Fatalf("unsubscribing a prefix of a dataset: %v", err)
	}
	if err := r.Unsubscribe(ctx, layoutPool, layoutIdentity, "settings", "5cd28fbe-0000-0000-0000-00000000dead"); !errors.Is(err, ErrNotSubscribed) {
		t.Fatalf("unsubscribing an unknown device: %v", err)
	}
	must(r.Subscribe(ctx, layoutPool, layoutIdentity, "game.v2", g.ID))
	must(r.Unsubscribe(ctx, layoutPool, layoutIdentity, "settings", g.ID))
	if got, want := record(g.ID), "G|"+ms36(t0.Add(2*time.Second))+"|game.v2=0|"+pipe; got != want {
		t.Fatalf("after unsubscribing the start: %q, want %q", got, want)
	}
	must(r.Unsubscribe(ctx, layoutPool, layoutIdentity, "game.v2", g.ID))
	if got, want := record(g.ID), "G|"+ms36(t0.Add(2*time.Second))+"||"+pipe; got != want {
		t.Fatalf("after unsubscribing the last: %q, want %q", got, want)
	}
	// An unsubscribed device gets no sent count, but its push counts in its
	// budget.
	must(r.RecordSent(ctx, layoutPool, layoutIdentity, "game.v2", 4, []string{g.ID}, t0, time.Hour))
	if got, want := record(g.ID), "G|"+ms36(t0.Add(2*time.Second))+"||"+pipe; got != want {
		t.Fatalf("after a push to an unsubscribed device: %q, want %q", got, want)
	}

	fields, err := rdb.HKeys(ctx, key).Result()
	must(err)
	for _, f := range fields {
		if !strings.HasPrefix(f, "d:") && !strings.HasPrefix(f, "b:") {
			t.Fatalf("unexpected field %s in %v", f, fields)
		}
	}
	if len(fields) != 3 {
		t.Fatalf("fields %v, want two devices and a budget", fields)
	}
	for _, d := range []Device{g, a} {
		removed, err := r.RemoveDevice(ctx, layoutPool, layoutIdentity, d.ID, "")
		must(err)
		if removed.ID != d.ID || removed.Platform != d.Platform || removed.Token != d.Token {
			t.Fatalf("RemoveDevice returned %+v, want the device removed, %+v", removed, d)
		}
	}
	if n, err := rdb.Exists(ctx, key).Result(); err != nil || n != 0 {
		t.Fatalf("the hash outlives its devices: %d %v", n, err)
	}
}

// APNs tokens are stored as raw bytes, which may be any byte, '|', ' ' and
// '=' included: no script and no decoder may split the token, and tokens
// are found, compared and read back whole, in hex.
func TestRawAPNsTokens(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	r, rdb, key := layoutRegistry(t, t0)
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	record := func(id string) string {
		t.Helper()
		v, err := rdb.HGet(ctx, key, "d:"+id).Result()
		must(err)
		return v
	}
	ms36 := func(at time.Time) string { return strconv.FormatInt(at.UnixMilli(), 36) }
	long := make([]byte, maxAPNsTokenHex/2)
	for i := range long {
		long[i] = byte(255 - i*7)
	}
	long[0], long[1], long[2], long[3], long[4] = '|', ' ', '=', 0x00, 0xff
	raws := []string{
		strings.Repeat("|\x20=\x00\xff", 6) + "||",
		"|" + strings.Repeat("\x00", 30) + "|",
		"|set=0|settings=7|" + strings.Repeat("=", 14), // printable: an FCM token too
		" set=0 settings=0 |" + strings.Repeat("\xff", 13),
		"\xff\x00" + strings.Repeat("\x00", 30),
		"\xff\x00" + strings.Repeat("\x00", 30) + "\x7c", // the one above and a '|'
		string(long),
	}
	type dev struct {
		Device
		raw string
	}
	var devs []dev
	for i, raw := range raws {
		p := []Platform{APNS, APNSSandbox}[i%2]
		token := hex.EncodeToString([]byte(raw))
		d, created, err := r.RegisterDevice(ctx, layoutPool, layoutIdentity, p, strings.ToUpper(token))
		if err != nil || !created || d.Token != token || d.Platform != p {
			t.Fatalf("token %d: %+v created=%v %v", i, d, created, err)
		}
		if got, want := record(d.ID), p.code()+"|"+ms36(d.RegisteredAt)+"||"+raw; got != want {
			t.Fatalf("token %d: record %q, want %q", i, got, want)
		}
		devs = append(devs, dev{d, raw})
	}
	for i, d := range devs {
		again, created, err := r.RegisterDevice(ctx, layoutPool, layoutIdentity, d.Platform, d.Token)
		if err != nil || created || again.ID != d.ID || again.Token != d.Token || again.Platform != d.Platform || !again.RegisteredAt.After(d.RegisteredAt) {
			t.Fatalf("token %d again: %+v created=%v %v, want %+v registered later", i, again, created, err, d.Device)
		}
		devs[i].Device = again
	}
	// FCM tokens are kept as given, even one that is the hex of an APNs
	// token or the very bytes of another.
	for _, token := range []string{devs[0].Token, devs[2].raw} {
		d, created, err := r.RegisterDevice(ctx, layoutPool, layoutIdentity, GCM, token)
		if err != nil || !created || d.Token != token {
			t.Fatalf("FCM token %q: %+v created=%v %v", token, d, created, err)
		}
		if got, want := record(d.ID), "G|"+ms36(d.RegisteredAt)+"||"+token; got != want {
			t.Fatalf("FCM record %q, want %q", got, want)
		}
		devs = append(devs, dev{d, token})
	}

	var ids []string
	for _, d := range devs {
		ids = append(ids, d.ID)
		for _, ds := range []string{"set", "settings", "set"} {
			must(r.Subscribe(ctx, layoutPool, layoutIdentity, ds, d.ID))
		}
	}
	must(r.RecordSent(ctx, layoutPool, layoutIdentity, "settings", 5, ids, t0, time.Hour))
	must(r.RecordSent(ctx, layoutPool, layoutIdentity, "set", 2, ids, time.Time{}, 0))
	for _, d := range devs {
		must(r.Unsubscribe(ctx, layoutPool, layoutIdentity, "set", d.ID))
		if err := r.Unsubscribe(ctx, layoutPool, layoutIdentity, "set", d.ID); !errors.Is(err, ErrNotSubscribed) {
			t.Fatalf("unsubscribing twice: %v", err)
		}
		if got, want := record(d.ID), d.Platform.code()+"|"+ms36(d.RegisteredAt)+"|settings=5|"+d.raw; got != want {
			t.Fatalf("record %q, want %q", got, want)
		}
		if got, err := r.Device(ctx, layoutPool, layoutIdentity, d.ID); err != nil || got != d.Device {
			t.Fatalf("Device: %+v %v, want %+v", got, err, d.Device)
		}
	}
	reg, err := r.Registration(ctx, layoutPool, layoutIdentity)
	must(err)
	lookups := r.Registrations(ctx, []Identity{{layoutPool, layoutIdentity}})
	must(lookups[0].Err)
	for _, reg := range []*Registration{reg, lookups[0].Registration} {
		if len(reg.Devices) != len(devs) || len(reg.Subscriptions["set"]) != 0 || len(reg.Subscribers("settings")) != len(devs) {
			t.Fatalf("registration %+v", reg)
		}
		for _, d := range devs {
			if reg.Devices[d.ID] != d.Device || reg.Sent[SentKey(d.ID, "settings")] != 5 || reg.Budget[d.ID].Pushes != 1 {
				t.Fatalf("device %+v in %+v, want %+v", reg.Devices[d.ID], reg, d.Device)
			}
		}
	}

	// A dead token is compared whole, as Device.Token gives it.
	late := t0.Add(time.Hour)
	for i, d := range devs {
		wrong := []string{d.raw + "x", d.Token[:len(d.Token)-2], strings.ToUpper(d.Token) + "00"}
		if d.Platform != GCM {
			wrong = append(wrong, d.raw, devs[(i+1)%len(devs)].Token)
		}
		for _, token := range wrong {
			if removed, err := r.RemoveDeadDevice(ctx, layoutPool, layoutIdentity, d.ID, token, late, "Unregistered"); err != nil || removed {
				t.Fatalf("device %d removed on token %q: %v", i, token, err)
			}
		}
		if removed, err := r.RemoveDeadDevice(ctx, layoutPool, layoutIdentity, d.ID, d.Token, late, "Unregistered"); err != nil || !removed {
			t.Fatalf("device %d not removed on its token: %v", i, err)
		}
	}
	if n, err := rdb.Exists(ctx, key).Result(); err != nil || n != 0 {
		t.Fatalf("the hash outlives its devices: %d %v", n, err)
	}
}

// A registration time before 1970 is negative in base 36, which the
// scripts parse by hand.
func TestRemoveDeadDeviceBefore1970(t *testing.T) {
	t0 := time.UnixMilli(-86_400_000)
	r, _, _ := layoutRegistry(t, t0)
	ctx := context.Background()
	d, _, err := r.RegisterDevice(ctx, layoutPool, layoutIdentity, GCM, "fcm-old")
	if err != nil || !d.RegisteredAt.Equal(t0) {
		t.Fatalf("register: %+v %v", d, err)
	}
	if removed, err := r.RemoveDeadDevice(ctx, layoutPool, layoutIdentity, d.ID, "fcm-old", t0.Add(-time.Millisecond), "Unregistered"); err != nil || removed {
		t.Fatalf("dead before registration: %v %v", removed, err)
	}
	if removed, err := r.RemoveDeadDevice(ctx, layoutPool, layoutIdentity, d.ID, "fcm-old", t0, "Unregistered"); err != nil || !removed {
		t.Fatalf("dead at registration: %v %v", removed, err)
	}
}

func TestDecodeRegistration(t *testing.T) {
	const (
		d1 = "11111111-0000-0000-0000-000000000000"
		d2 = "22222222-0000-0000-0000-000000000000"
		d3 = "33333333-0000-0000-0000-000000000000"
	)
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	at := func(d time.Duration) string { return strconv.FormatInt(t0.Add(d).UnixMilli(), 36) }
	all := map[string]string{
		// d3 registered first; d1 and d2 in the same millisecond.
		"d:" + d1: "A|" + at(time.Second) + "|b=0 a=7|tok1",
		"d:" + d2: "G|" + at(time.Second) + "|a=0|x:y|z||",
		"d:" + d3: "S|" + at(0) + "|a=3|tok3",
		"b:" + d1: strconv.FormatInt(t0.UnixMilli(), 10) + " 4",
		"other":   "ignored",
	}
	reg, err := decodeRegistration(all)
	if err != nil {
		t.Fatal(err)
	}
	if d := reg.Devices[d2]; d.Platform != GCM || d.Token != "x:y|z||" || !d.RegisteredAt.Equal(t0.Add(time.Second)) {
		t.Fatalf("device %+v", d)
	}
	// APNs tokens are stored raw and read in hex.
	if d := reg.Devices[d3]; d.Platform != APNSSandbox || d.Token != "746f6b33" || d.ID != d3 {
		t.Fatalf("device %+v", d)
	}
	if d := reg.Devices[d1]; d.Platform != APNS || d.Token != "746f6b31" || d.ID != d1 {
		t.Fatalf("device %+v", d)
	}
	if got, want := fmt.Sprint(reg.Subscriptions), fmt.Sprintf("map[a:[%s %s %s] b:[%s]]", d3, d1, d2, d1); got != want {
		t.Fatalf("subscriptions %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(reg.Sent), fmt.Sprintf("map[%s|a:7 %s|a:3]", d1, d3); got != want {
		t.Fatalf("sent %s, want %s", got, want)
	}
	if w := reg.Budget[d1]; !w.Start.Equal(t0) || w.Pushes != 4 || len(reg.Budget) != 1 {
		t.Fatalf("budget %v", reg.Budget)
	}
	// The lists share an array: appending to one must not change another.
	_ = append(reg.Subscriptions["a"], "x")
	if reg.Subscriptions["b"][0] != d1 {
		t.Fatal("appending to one subscription list changed another")
	}

	empty, err := decodeRegistration(map[string]string{})
	if err != nil || empty.Devices == nil || empty.Subscriptions == nil || empty.Sent == nil || empty.Budget == nil || len(empty.Subscribers("a")) != 0 {
		t.Fatalf("empty registration %+v %v", empty, err)
	}

	for _, bad := range []string{
		"", "A", "A|", "APNS|" + at(0) + "||tok", "X|" + at(0) + "||tok", "A|" + at(0) + "|tok",
		"A||a=1|tok", "A|" + at(0) + "||", "A|#!|a=1|tok", "A|" + at(0) + "|a|tok", "A|" + at(0) + "|=1|tok",
		"A|" + at(0) + "|a=|tok", "A|" + at(0) + "|a=-1|tok", "A|" + at(0) + "|a=1 |tok", "A|" + at(0) + "| a=1|tok",
		"A|" + at(0) + "|a=1  b=2|tok", "A|" + at(0) + "|a=1 a=2|tok", "A|" + at(0) + "|a=x|tok",
	} {
		_, err := decodeRegistration(map[string]string{"d:" + d1: bad, "d:" + d2: "G|" + at(0) + "|a=1|tok"})
		if err == nil || !strings.Contains(err.Error(), "device "+d1+" has a corrupt record") {
			t.Errorf("record %q: got %v, want a corrupt record error naming %s", bad, err, d1)
		}
	}
	for _, bad := range []string{"", "1", "1 ", " 1", "x 1", "1 x", "1 -1", "1 1234567890123456789"} {
		_, err := decodeRegistration(map[string]string{"b:" + d1: bad})
		if err == nil || !strings.Contains(err.Error(), "device "+d1+" has a corrupt push budget") {
			t.Errorf("budget %q: got %v", bad, err)
		}
	}
}

// benchRegistration registers four devices, two APNs and two FCM with
// tokens of the usual length, each subscribed to one dataset with a sent
// count, as the dispatcher finds them.
func benchRegistration(b *testing.B) (*Registry, *redis.Client, []string) {
	rdb, prefix := testenv.Redis(b)
	r := New(rdb, Options{KeyPrefix: prefix})
	ctx := context.Background()
	var ids []string
	for i := range 4 {
		p, token := APNS, fmt.Sprintf("%08x%056x", i, uint64(i)*0x9e3779b97f4a7c15)
		if i%2 == 1 {
			p, token = GCM, fcmToken(i)
		}
		d, _, err := r.RegisterDevice(ctx, layoutPool, layoutIdentity, p, token)
		if err != nil {
			b.Fatal(err)
		}
		if err := r.Subscribe(ctx, layoutPool, layoutIdentity, "settings", d.ID); err != nil {
			b.Fatal(err)
		}
		ids = append(ids, d.ID)
	}
	if err := r.RecordSent(ctx, layoutPool, layoutIdentity, "settings", 42, ids, time.Now(), time.Hour); err != nil {
		b.Fatal(err)
	}
	return r, rdb, ids
}

func BenchmarkRegistration(b *testing.B) {
	r, _, _ := benchRegistration(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		reg, err := r.Registration(ctx, layoutPool, layoutIdentity)
		if err != nil || len(reg.Subscribers("settings")) != 4 {
			b.Fatal(reg, err)
		}
	}
}

func BenchmarkDecodeRegistration(b *testing.B) {
	r, rdb, _ := benchRegistration(b)
	all, err := rdb.HGetAll(context.Background(), r.identityKey(layoutPool, layoutIdentity)).Result()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		reg, err := decodeRegistration(all)
		if err != nil || len(reg.Sent) != 4 {
			b.Fatal(reg, err)
		}
	}
}

func BenchmarkRecordSent(b *testing.B) {
	r, _, ids := benchRegistration(b)
	ctx := context.Background()
	n := int64(100)
	b.ReportAllocs()
	for b.Loop() {
		n++
		if err := r.RecordSent(ctx, layoutPool, layoutIdentity, "settings", n, ids, time.Now(), time.Hour); err != nil {
			b.Fatal(err)
		}
	}
}
