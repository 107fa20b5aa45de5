package registry

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pushsync/pushsync/internal/sweepindex"
	"github.com/pushsync/pushsync/sync/cognito"
)

// luaHelpers are shared by the scripts below. fields returns the positions
// of the three '|' that split a device record
// "<p>|<registered ms, base 36>|<subs>|<token>" (the token, last, may hold
// '|' or any other byte itself: the scripts only ever take it whole, as
// string.sub(v, c + 1), or keep it in place); ms36 parses the registration
// time, which Lua's tonumber cannot do for a negative number in base 36.
const luaHelpers = `
local function fields(v)
  local a = string.find(v, '|', 1, true)
  local b = string.find(v, '|', a + 1, true)
  local c = string.find(v, '|', b + 1, true)
  return a, b, c
end
local function ms36(s)
  if string.byte(s, 1) == 45 then return -tonumber(string.sub(s, 2), 36) end
  return tonumber(s, 36)
end
`

// registerScript returns {deviceId, record, created}. A device with the same
// platform and token keeps its id and subscriptions and gets the new
// registration time. ARGV: platform code, token in its stored
// form (raw bytes for APNs; see storedToken), new device id, registration
// time (unix ms in base 36), device limit.
var registerScript = redis.NewScript(luaHelpers + `
local all = redis.call('HGETALL', KEYS[1])
local n = 0
local p = ARGV[1] .. '|'
for i = 1, #all, 2 do
  local f, v = all[i], all[i+1]
  if string.sub(f, 1, 2) == 'd:' then
    n = n + 1
    if string.sub(v, 1, 2) == p then
      local a, b, c = fields(v)
      if string.sub(v, c + 1) == ARGV[2] then
        -- Registered again: the registration time moves on, so that a
        -- push service's report that the token died before now no longer
        -- removes the device.
        v = p .. ARGV[4] .. string.sub(v, b)
        redis.call('HSET', KEYS[1], f, v)
        return {string.sub(f, 3), v, '0'}
      end
    end
  end
end
if n >= tonumber(ARGV[5]) then return redis.error_reply('TOOMANY') end
local v = p .. ARGV[4] .. '||' .. ARGV[2]
redis.call('HSET', KEYS[1], 'd:' .. ARGV[3], v)
return {ARGV[3], v, '1'}
`)

// RegisterDevice registers a push token for an identity and returns the
// device. Registering the same platform and token again for the same
// identity returns the existing device with created false, registered now.
func (r *Registry) RegisterDevice(ctx context.Context, pool, identity string, platform Platform, token string) (dev Device, created bool, err error) {
	if err := validateIdentity(pool, identity); err != nil {
		return Device{}, false, err
	}
	if _, err := ParsePlatform(string(platform)); err != nil {
		return Device{}, false, err
	}
	token, err = NormalizeToken(platform, token)
	if err != nil {
		return Device{}, false, err
	}
	res, err := registerScript.Run(ctx, r.rdb, []string{r.identityKey(pool, identity)},
		platform.code(), storedToken(platform, token), r.newID(), strconv.FormatInt(r.now().UnixMilli(), 36), r.maxDevices).StringSlice()
	if err != nil {
		if strings.Contains(err.Error(), "TOOMANY") {
			return Device{}, false, fmt.Errorf("registry: %w (at most %d)", ErrTooManyDevices, r.maxDevices)
		}
		return Device{}, false, fmt.Errorf("registry: register device: %w", err)
	}
	dev, _, err = decodeDevice(res[0], res[1])
	return dev, res[2] == "1", err
}

// Device returns one device of an identity.
func (r *Registry) Device(ctx context.Context, pool, identity, deviceID string) (Device, error) {
	v, err := r.rdb.HGet(ctx, r.identityKey(pool, identity), "d:"+deviceID).Result()
	if err == redis.Nil {
		return Device{}, fmt.Errorf("registry: %w: %s", ErrDeviceNotFound, deviceID)
	}
	if err != nil {
		return Device{}, fmt.Errorf("registry: get device: %w", err)
	}
	d, _, err := decodeDevice(deviceID, v)
	return d, err
}

// Registration is everything registered for one identity: its devices,
// per dataset the ids of the devices subscribed to it, and the highest sync
// count already pushed to each device for each dataset.
type Registration struct {
	Devices map[string]Device
	// Subscriptions maps each dataset to the ids of the devices subscribed
	// to it, ordered by RegisteredAt, then ID.
	Subscriptions map[string][]string
	// Sent maps SentKey(device, dataset) to the highest sync count a push
	// to that device for that dataset has carried, while the device is
	// subscribed to the dataset; there is no entry before the first push.
	Sent map[string]int64
	// Budget maps device ids to their push budget window, when pushes are
	// counted (see RecordSent).
	Budget map[string]BudgetWindow
}

// BudgetWindow counts the pushes a device got since Start.
type BudgetWindow struct {
	Start  time.Time
	Pushes int
}

// SentKey is the key of Registration.Sent for a device and a dataset.
func SentKey(deviceID, dataset string) string { return deviceID + "|" + dataset }

// Subscribers returns the devices subscribed to the dataset, in the order
// of Subscriptions: oldest registration first.
func (reg *Registration) Subscribers(dataset string) []Device {
	ids := reg.Subscriptions[dataset]
	out := make([]Device, 0, len(ids))
	for _, id := range ids {
		if d, ok := reg.Devices[id]; ok {
			out = append(out, d)
		}
	}
	return out
}

// Registration reads an identity's devices and subscriptions in one round
// trip.
func (r *Registry) Registration(ctx context.Context, pool, identity string) (*Registration, error) {
	all, err := r.rdb.HGetAll(ctx, r.identityKey(pool, identity)).Result()
	if err != nil {
		return nil, fmt.Errorf("registry: read registration: %w", err)
	}
	return decodeRegistration(all)
}

// subEntry is one "<dataset>=<n>" of a device record.
type subEntry struct {
	dataset, device string
	at              int64 // the device's registration, unix ms
	sent            int64
}

type budgetEntry struct {
	device string
	w      BudgetWindow
}

// decodeRegistration builds a Registration from the HGETALL of an
// identity's hash. Every string it holds (ids, FCM tokens, dataset names)
// shares the memory of all, and the hex of all the APNs tokens and the
// Sent keys each share one allocation, so a registration costs a fixed
// handful of allocations; it is on the dispatcher's hot path.
func decodeRegistration(all map[string]string) (*Registration, error) {
	// Small identities, the usual case, are gathered on the stack.
	var devBuf [8]Device
	var subBuf [16]subEntry
	var budBuf [8]budgetEntry
	devs, subs, buds := devBuf[:0], subBuf[:0], budBuf[:0]
	for f, v := range all {
		if len(f) < 3 || f[1] != ':' {
			continue
		}
		switch f[0] {
		case 'd':
			d, list, err := decodeRecord(f[2:], v) // APNs tokens raw until below
			if err != nil {
				return nil, err
			}
			devs = append(devs, d)
			at := d.RegisteredAt.UnixMilli()
			for list != "" {
				e := list
				if i := strings.IndexByte(list, ' '); i >= 0 {
					e, list = list[:i], list[i+1:]
					if list == "" {
						return nil, corruptDevice(d.ID, v)
					}
				} else {
					list = ""
				}
				i := strings.IndexByte(e, '=')
				if i <= 0 {
					return nil, corruptDevice(d.ID, v)
				}
				n, ok := parseCount(e[i+1:])
				if !ok {
					return nil, corruptDevice(d.ID, v)
				}
				subs = append(subs, subEntry{dataset: e[:i], device: d.ID, at: at, sent: n})
			}
		case 'b':
			ms, count, ok := strings.Cut(v, " ")
			start, err1 := strconv.ParseInt(ms, 10, 64)
			n, ok2 := parseCount(count)
			if !ok || err1 != nil || !ok2 || int64(int(n)) != n {
				return nil, fmt.Errorf("registry: device %s has a corrupt push budget %q", f[2:], v)
			}
			buds = append(buds, budgetEntry{f[2:], BudgetWindow{Start: time.UnixMilli(start), Pushes: int(n)}})
		}
	}

	// Hex-encode the raw APNs tokens, all into one string.
	hexLen := 0
	for _, d := range devs {
		if d.Platform.Kind() == KindAPNs {
			hexLen += 2 * len(d.Token)
		}
	}
	var hexes string
	if hexLen > 0 {
		var b strings.Builder
		b.Grow(hexLen)
		for _, d := range devs {
			if d.Platform.Kind() == KindAPNs {
				writeHex(&b, d.Token)
			}
		}
		hexes = b.String()
	}

	reg := &Registration{Devices: make(map[string]Device, len(devs)), Budget: make(map[string]BudgetWindow, len(buds))}
	for _, d := range devs {
		if d.Platform.Kind() == KindAPNs {
			n := 2 * len(d.Token)
			d.Token, hexes = hexes[:n], hexes[n:]
		}
		reg.Devices[d.ID] = d
	}
	for _, b := range buds {
		reg.Budget[b.device] = b.w
	}

	// Group the subscriptions by dataset, each group oldest device first,
	// and cut every group's id list out of one array.
	slices.SortFunc(subs, func(a, b subEntry) int {
		if c := strings.Compare(a.dataset, b.dataset); c != 0 {
			return c
		}
		if a.at != b.at {
			return cmp.Compare(a.at, b.at)
		}
		return strings.Compare(a.device, b.device)
	})
	datasets, sent, keyLen := 0, 0, 0
	for i, s := range subs {
		if i == 0 || s.dataset != subs[i-1].dataset {
			datasets++
		} else if s.device == subs[i-1].device {
			return nil, fmt.Errorf("registry: device %s has a corrupt record: subscribed to %s twice", s.device, s.dataset)
		}
		if s.sent > 0 {
			sent++
			keyLen += len(s.device) + 1 + len(s.dataset)
		}
	}
	reg.Subscriptions = make(map[string][]string, datasets)
	reg.Sent = make(map[string]int64, sent)
	var ids []string
	if len(subs) > 0 {
		ids = make([]string, len(subs))
	}
	var keys strings.Builder
	keys.Grow(keyLen)
	for i, s := range subs {
		ids[i] = s.device
		if s.sent > 0 {
			keys.WriteString(s.device)
			keys.WriteByte('|')
			keys.WriteString(s.dataset)
		}
	}
	allKeys, off := keys.String(), 0
	for i := 0; i < len(subs); {
		j := i + 1
		for j < len(subs) && subs[j].dataset == subs[i].dataset {
			j++
		}
		reg.Subscriptions[subs[i].dataset] = ids[i:j:j]
		i = j
	}
	for _, s := range subs {
		if s.sent > 0 {
			n := len(s.device) + 1 + len(s.dataset)
			reg.Sent[allKeys[off:off+n]] = s.sent
			off += n
		}
	}
	return reg, nil
}

// parseCount parses a non-negative decimal count.
func parseCount(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// Subscribers returns the devices of an identity subscribed to a dataset.
func (r *Registry) Subscribers(ctx context.Context, pool, identity, dataset string) ([]Device, error) {
	reg, err := r.Registration(ctx, pool, identity)
	if err != nil {
		return nil, err
	}
	return reg.Subscribers(dataset), nil
}

// subscribeScript adds "<ARGV[2]>=0" to the subscriptions of device
// ARGV[1] unless it has ARGV[3] subscriptions already; it returns 1, or 0
// if the device was already subscribed.
var subscribeScript = redis.NewScript(luaHelpers + `
local f = 'd:' .. ARGV[1]
local v = redis.call('HGET', KEYS[1], f)
if not v then return redis.error_reply('NODEVICE') end
local a, b, c = fields(v)
local subs = string.sub(v, b + 1, c - 1)
if string.find(' ' .. subs, ' ' .. ARGV[2] .. '=', 1, true) then return 0 end
local _, n = string.gsub(subs, '=', '=')
if n >= tonumber(ARGV[3]) then return redis.error_reply('TOOMANYSUBS') end
if subs ~= '' then subs = subs .. ' ' end
redis.call('HSET', KEYS[1], f, string.sub(v, 1, b) .. subs .. ARGV[2] .. '=0' .. string.sub(v, c))
return 1
`)

// Subscribe subscribes a registered device to a dataset of its identity.
// Subscribing again is not an error. A device subscribed to
// MaxSubscriptionsPerDevice datasets gets ErrTooManySubscriptions.
func (r *Registry) Subscribe(ctx context.Context, pool, identity, dataset, deviceID string) error {
	if err := validateSubscription(pool, identity, dataset, deviceID); err != nil {
		return err
	}
	err := subscribeScript.Run(ctx, r.rdb, []string{r.identityKey(pool, identity)}, deviceID, dataset, r.maxSubs).Err()
	if err != nil && strings.Contains(err.Error(), "NODEVICE") {
		return fmt.Errorf("registry: %w: %s", ErrDeviceNotFound, deviceID)
	}
	if err != nil && strings.Contains(err.Error(), "TOOMANYSUBS") {
		return fmt.Errorf("registry: %w: device %s is subscribed to %d datasets already; unsubscribe it from one first", ErrTooManySubscriptions, deviceID, r.maxSubs)
	}
	if err != nil {
		return fmt.Errorf("registry: subscribe: %w", err)
	}
	return nil
}

// unsubscribeScript drops dataset ARGV[2], with its sent count, from the
// subscriptions of device ARGV[1]; it returns 1, or 0 if there was none.
var unsubscribeScript = redis.NewScript(luaHelpers + `
local f = 'd:' .. ARGV[1]
local v = redis.call('HGET', KEYS[1], f)
if not v then return 0 end
local a, b, c = fields(v)
local subs = ' ' .. string.sub(v, b + 1, c - 1) .. ' '
local s = string.find(subs, ' ' .. ARGV[2] .. '=', 1, true)
if not s then return 0 end
local e = string.find(subs, ' ', s + 1, true)
subs = string.sub(string.sub(subs, 1, s) .. string.sub(subs, e + 1), 2, -2)
redis.call('HSET', KEYS[1], f, string.sub(v, 1, b) .. subs .. string.sub(v, c))
return 1
`)

// Unsubscribe removes a device's subscription to a dataset. It returns
// ErrNotSubscribed if there was none.
func (r *Registry) Unsubscribe(ctx context.Context, pool, identity, dataset, deviceID string) error {
	if err := validateSubscription(pool, identity, dataset, deviceID); err != nil {
		return err
	}
	n, err := unsubscribeScript.Run(ctx, r.rdb, []string{r.identityKey(pool, identity)}, deviceID, dataset).Int()
	if err != nil {
		return fmt.Errorf("registry: unsubscribe: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("registry: %w: device %s, dataset %s", ErrNotSubscribed, deviceID, dataset)
	}
	return nil
}

// removeScript removes device ARGV[1], whose record holds its subscriptions
// and sent counts, and its push budget, and returns the removed record; it
// returns 0 if there is no such device. With ARGV[5] (a reason) it notes
// the removal in KEYS[2], the identity's removal markers, as
// "<platform code>|<ARGV[6], removal unix ms>|<reason>", in the same step. With ARGV[2] (a token) and ARGV[3]
// (unix ms) it removes the device only if it still has that token and
// registered no later than that time, and returns -1 if not: a token the
// app registered again after the push service declared it dead is alive.
// ARGV[2] is the token as
// an FCM record stores it, ARGV[4] as an APNs record does (raw bytes, or
// empty, which matches no record, if the token is no APNs token). ARGV[7]
// is the deadline of the removal's note in the sweep index, 0 without a
// reason (sweepindex.Check).
var removeScript = redis.NewScript(sweepindex.Check + luaHelpers + `
local f = 'd:' .. ARGV[1]
local v = redis.call('HGET', KEYS[1], f)
if not v then return 0 end
if ARGV[2] ~= '' then
  local a, b, c = fields(v)
  local token = ARGV[4]
  if string.sub(v, 1, 1) == 'G' then token = ARGV[2] end
  if string.sub(v, c + 1) ~= token then return -1 end
  if ms36(string.sub(v, a + 1, b - 1)) > tonumber(ARGV[3]) then return -1 end
end
redis.call('HDEL', KEYS[1], f, 'b:' .. ARGV[1])
if ARGV[5] ~= '' then
  redis.call('HSET', KEYS[2], ARGV[1], string.sub(v, 1, 1) .. '|' .. ARGV[6] .. '|' .. ARGV[5])
end
return v
`)

// RemoveDevice removes a device and all its subscriptions in one atomic
// step, and returns the device as it was (only its ID if its record could
// not be read). With a reason, it notes the removal in the same step, for
// its DeviceRemoved event (see Removal). It returns ErrDeviceNotFound if
// the device is not registered.
func (r *Registry) RemoveDevice(ctx context.Context, pool, identity, deviceID, reason string) (Device, error) {
	if err := validateIdentity(pool, identity); err != nil {
		return Device{}, err
	}
	if err := validateDeviceID(deviceID); err != nil {
		return Device{}, err
	}
	var deadline int64
	if reason != "" {
		var err error
		if deadline, err = r.noteRemoval(ctx, pool, identity); err != nil {
			return Device{}, fmt.Errorf("registry: remove device: %w", err)
		}
	}
	res, err := removeScript.Run(ctx, r.rdb, []string{r.identityKey(pool, identity), r.removalsKey(pool, identity)},
		deviceID, "", 0, "", reason, r.now().UnixMilli(), deadline).Result()
	if err != nil {
		return Device{}, fmt.Errorf("registry: remove device: %w", lateError(err))
	}
	v, ok := res.(string)
	if !ok {
		return Device{}, fmt.Errorf("registry: %w: %s", ErrDeviceNotFound, deviceID)
	}
	d, _, err := decodeDevice(deviceID, v)
	if err != nil {
		// Removed all the same: that is how a corrupt record goes.
		return Device{ID: deviceID}, nil
	}
	return d, nil
}

func validateSubscription(pool, identity, dataset, deviceID string) error {
	if err := validateIdentity(pool, identity); err != nil {
		return err
	}
	if err := cognito.ValidateDatasetName(dataset); err != nil {
		return err
	}
	return validateDeviceID(deviceID)
}

// validateDeviceID checks a device id; one holds no white space
// (RegisterDevice makes UUIDs).
func validateDeviceID(deviceID string) error {
	if err := cognito.ValidateDeviceID(deviceID); err != nil {
		return err
	}
	if strings.ContainsAny(deviceID, " \t") {
		return &cognito.FieldError{Field: "DeviceId", Reason: "must not contain white space"}
	}
	return nil
}

// RemoveDeadDevice removes a device whose token a push service declared
// dead, with its subscriptions, in one atomic step, but only if the device
// still has that token and registered no later than deadSince (APNs reports
// when it learned the token was gone; a registration after that is a new,
// live one). It reports whether the device was removed. The token is
// compared as Device.Token gives it: APNs tokens in lower-case hex. The
// removal is noted with reason, the push service's, in the same step, for
// its DeviceRemoved event (see Removal).
func (r *Registry) RemoveDeadDevice(ctx context.Context, pool, identity, deviceID, token string, deadSince time.Time, reason string) (bool, error) {
	if reason == "" {
		return false, fmt.Errorf("registry: remove dead device %s: no reason given", deviceID)
	}
	deadline, err := r.noteRemoval(ctx, pool, identity)
	if err != nil {
		return false, fmt.Errorf("registry: remove dead device: %w", err)
	}
	// The script picks the form to compare by the platform of the record.
	res, err := removeScript.Run(ctx, r.rdb, []string{r.identityKey(pool, identity), r.removalsKey(pool, identity)},
		deviceID, token, deadSince.UnixMilli(), rawAPNsToken(token), reason, r.now().UnixMilli(), deadline).Result()
	if err != nil {
		return false, fmt.Errorf("registry: remove dead device: %w", lateError(err))
	}
	_, removed := res.(string)
	return removed, nil
}

// recordSentScript raises, for each device in ARGV[5..] that is still
// registered and subscribed to dataset ARGV[1], the sent count of that
// subscription in its record to ARGV[2]; with ARGV[3] (unix ms, non-zero)
// it also counts the push in the budget window of ARGV[4] ms of every
// device still registered.
var recordSentScript = redis.NewScript(luaHelpers + `
local n = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
local key = ' ' .. ARGV[1] .. '='
for i = 5, #ARGV do
  local f = 'd:' .. ARGV[i]
  local v = redis.call('HGET', KEYS[1], f)
  if v then
    local _, p2, p3 = fields(v)
    local subs = ' ' .. string.sub(v, p2 + 1, p3 - 1) .. ' '
    local at = string.find(subs, key, 1, true)
    if at then
      local e = string.find(subs, ' ', at + 1, true)
      if n > tonumber(string.sub(subs, at + #key, e - 1)) then
        redis.call('HSET', KEYS[1], f, string.sub(v, 1, p2) .. string.sub(subs, 2, at + #key - 1) .. ARGV[2] .. string.sub(subs, e, -2) .. string.sub(v, p3))
      end
    end
    if now > 0 then
      local bf = 'b:' .. ARGV[i]
      local b = redis.call('HGET', KEYS[1], bf)
      local start, count = now, 0
      if b then
        local s, c = string.match(b, '(%d+) (%d+)')
        if now - tonumber(s) < window then start, count = tonumber(s), tonumber(c) end
      end
      redis.call('HSET', KEYS[1], bf, string.format('%d %d', start, count + 1))
    end
  end
end
return 0
`)

// RecordSent notes that pushes carrying syncCount for dataset were
// accepted for the devices, so that a redelivered or older event does not
// push to them again; counts only rise. With a non-zero countAt it also
// counts each push in its device's budget window, which lasts window.
func (r *Registry) RecordSent(ctx context.Context, pool, identity, dataset string, syncCount int64, deviceIDs []string, countAt time.Time, window time.Duration) error {
	if len(deviceIDs) == 0 {
		return nil
	}
	args := sentArgs(&Sent{Dataset: dataset, SyncCount: syncCount, DeviceIDs: deviceIDs, CountAt: countAt, Window: window})
	if err := recordSentScript.Run(ctx, r.rdb, []string{r.identityKey(pool, identity)}, args...).Err(); err != nil {
		return fmt.Errorf("registry: record sent pushes: %w", err)
	}
	return nil
}
