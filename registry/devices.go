package registry

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pushsync/pushsync/sync/cognito"
)

// luaHelpers are shared by the scripts below: hasWord reports whether a
// space-separated list holds a word, dropWord removes it.
const luaHelpers = `
local function hasWord(list, w)
  for x in string.gmatch(list, '%S+') do if x == w then return true end end
  return false
end
local function dropWord(list, w)
  local out = {}
  for x in string.gmatch(list, '%S+') do if x ~= w then out[#out+1] = x end end
  return table.concat(out, ' ')
end
`

// registerScript returns {deviceId, record, created}. A device with the same
// platform and token keeps its id.
var registerScript = redis.NewScript(luaHelpers + `
local all = redis.call('HGETALL', KEYS[1])
local n = 0
for i = 1, #all, 2 do
  local f, v = all[i], all[i+1]
  if string.sub(f, 1, 2) == 'd:' then
    n = n + 1
    local a = string.find(v, '|', 1, true)
    local b = string.find(v, '|', a + 1, true)
    if string.sub(v, 1, a - 1) == ARGV[1] and string.sub(v, b + 1) == ARGV[2] then
      return {string.sub(f, 3), v, '0'}
    end
  end
end
if n >= tonumber(ARGV[5]) then return redis.error_reply('TOOMANY') end
local v = ARGV[1] .. '|' .. ARGV[4] .. '|' .. ARGV[2]
redis.call('HSET', KEYS[1], 'd:' .. ARGV[3], v)
return {ARGV[3], v, '1'}
`)

// RegisterDevice registers a push token for an identity and returns the
// device. Registering the same platform and token again for the same
// identity returns the existing device with created false.
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
		string(platform), token, r.newID(), r.now().UnixMilli(), r.maxDevices).StringSlice()
	if err != nil {
		if strings.Contains(err.Error(), "TOOMANY") {
			return Device{}, false, fmt.Errorf("registry: %w (at most %d)", ErrTooManyDevices, r.maxDevices)
		}
		return Device{}, false, fmt.Errorf("registry: register device: %w", err)
	}
	dev, err = decodeDevice(res[0], res[1])
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
	return decodeDevice(deviceID, v)
}

// Registration is everything registered for one identity: its devices,
// per dataset the ids of the devices subscribed to it, and the highest sync
// count already pushed to each device for each dataset.
type Registration struct {
	Devices       map[string]Device
	Subscriptions map[string][]string
	// Sent maps SentKey(device, dataset) to the highest sync count a push
	// to that device for that dataset has carried.
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

// Subscribers returns the devices subscribed to the dataset, in
// subscription order.
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
	reg := &Registration{Devices: make(map[string]Device, len(all)), Subscriptions: make(map[string][]string), Sent: make(map[string]int64), Budget: make(map[string]BudgetWindow)}
	for f, v := range all {
		switch {
		case strings.HasPrefix(f, "d:"):
			d, err := decodeDevice(f[2:], v)
			if err != nil {
				return nil, err
			}
			reg.Devices[d.ID] = d
		case strings.HasPrefix(f, "s:"):
			reg.Subscriptions[f[2:]] = strings.Fields(v)
		case strings.HasPrefix(f, "b:"):
			var ms int64
			var n int
			if _, err := fmt.Sscan(v, &ms, &n); err != nil {
				return nil, fmt.Errorf("registry: corrupt push budget %s=%q", f, v)
			}
			reg.Budget[f[2:]] = BudgetWindow{Start: time.UnixMilli(ms), Pushes: n}
		case strings.HasPrefix(f, "x:"):
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("registry: corrupt sent count %s=%q", f, v)
			}
			reg.Sent[f[2:]] = n
		}
	}
	return reg, nil
}

// Subscribers returns the devices of an identity subscribed to a dataset.
func (r *Registry) Subscribers(ctx context.Context, pool, identity, dataset string) ([]Device, error) {
	reg, err := r.Registration(ctx, pool, identity)
	if err != nil {
		return nil, err
	}
	return reg.Subscribers(dataset), nil
}

var subscribeScript = redis.NewScript(luaHelpers + `
if redis.call('HEXISTS', KEYS[1], 'd:' .. ARGV[1]) == 0 then return redis.error_reply('NODEVICE') end
local f = 's:' .. ARGV[2]
local list = redis.call('HGET', KEYS[1], f) or ''
if hasWord(list, ARGV[1]) then return 0 end
if list == '' then list = ARGV[1] else list = list .. ' ' .. ARGV[1] end
redis.call('HSET', KEYS[1], f, list)
return 1
`)

// Subscribe subscribes a registered device to a dataset of its identity.
// Subscribing again is not an error.
func (r *Registry) Subscribe(ctx context.Context, pool, identity, dataset, deviceID string) error {
	if err := validateSubscription(pool, identity, dataset, deviceID); err != nil {
		return err
	}
	err := subscribeScript.Run(ctx, r.rdb, []string{r.identityKey(pool, identity)}, deviceID, dataset).Err()
	if err != nil && strings.Contains(err.Error(), "NODEVICE") {
		return fmt.Errorf("registry: %w: %s", ErrDeviceNotFound, deviceID)
	}
	if err != nil {
		return fmt.Errorf("registry: subscribe: %w", err)
	}
	return nil
}

var unsubscribeScript = redis.NewScript(luaHelpers + `
local f = 's:' .. ARGV[2]
local list = redis.call('HGET', KEYS[1], f)
if not list or not hasWord(list, ARGV[1]) then return 0 end
list = dropWord(list, ARGV[1])
if list == '' then redis.call('HDEL', KEYS[1], f) else redis.call('HSET', KEYS[1], f, list) end
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

// removeScript removes device ARGV[1] with its subscriptions and sent
// counts. With ARGV[2] (a token) and ARGV[3] (unix ms) it removes the device
// only if it still has that token and registered no later than that time:
// a token the app registered again after the push service declared it dead
// is alive.
var removeScript = redis.NewScript(luaHelpers + `
local v = redis.call('HGET', KEYS[1], 'd:' .. ARGV[1])
if not v then return 0 end
if ARGV[2] ~= '' then
  local a = string.find(v, '|', 1, true)
  local b = string.find(v, '|', a + 1, true)
  if string.sub(v, b + 1) ~= ARGV[2] then return -1 end
  if tonumber(string.sub(v, a + 1, b - 1)) > tonumber(ARGV[3]) then return -1 end
end
redis.call('HDEL', KEYS[1], 'd:' .. ARGV[1])
local sent = 'x:' .. ARGV[1] .. '|'
redis.call('HDEL', KEYS[1], 'b:' .. ARGV[1])
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local f, w = all[i], all[i+1]
  if string.sub(f, 1, 2) == 's:' and hasWord(w, ARGV[1]) then
    local rest = dropWord(w, ARGV[1])
    if rest == '' then redis.call('HDEL', KEYS[1], f) else redis.call('HSET', KEYS[1], f, rest) end
  elseif string.sub(f, 1, #sent) == sent then
    redis.call('HDEL', KEYS[1], f)
  end
end
return 1
`)

// RemoveDevice removes a device and all its subscriptions in one atomic
// step. It returns ErrDeviceNotFound if the device is not registered.
func (r *Registry) RemoveDevice(ctx context.Context, pool, identity, deviceID string) error {
	n, err := removeScript.Run(ctx, r.rdb, []string{r.identityKey(pool, identity)}, deviceID, "", 0).Int()
	if err != nil {
		return fmt.Errorf("registry: remove device: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("registry: %w: %s", ErrDeviceNotFound, deviceID)
	}
	return nil
}

func validateSubscription(pool, identity, dataset, deviceID string) error {
	if err := validateIdentity(pool, identity); err != nil {
		return err
	}
	if err := cognito.ValidateDatasetName(dataset); err != nil {
		return err
	}
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
// live one). It reports whether the device was removed.
func (r *Registry) RemoveDeadDevice(ctx context.Context, pool, identity, deviceID, token string, deadSince time.Time) (bool, error) {
	n, err := removeScript.Run(ctx, r.rdb, []string{r.identityKey(pool, identity)}, deviceID, token, deadSince.UnixMilli()).Int()
	if err != nil {
		return false, fmt.Errorf("registry: remove dead device: %w", err)
	}
	return n == 1, nil
}

// recordSentScript raises x:<device>|<dataset> to ARGV[2] for each device
// in ARGV[5..] that is still registered; with ARGV[3] (unix ms, non-zero)
// it also counts the push in the device's budget window of ARGV[4] ms.
var recordSentScript = redis.NewScript(`
local n = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
for i = 5, #ARGV do
  if redis.call('HEXISTS', KEYS[1], 'd:' .. ARGV[i]) == 1 then
    local f = 'x:' .. ARGV[i] .. '|' .. ARGV[1]
    local cur = tonumber(redis.call('HGET', KEYS[1], f) or '0')
    if n > cur then redis.call('HSET', KEYS[1], f, ARGV[2]) end
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
	var now int64
	if !countAt.IsZero() {
		now = countAt.UnixMilli()
	}
	args := make([]any, 0, len(deviceIDs)+4)
	args = append(args, dataset, syncCount, now, window.Milliseconds())
	for _, id := range deviceIDs {
		args = append(args, id)
	}
	if err := recordSentScript.Run(ctx, r.rdb, []string{r.identityKey(pool, identity)}, args...).Err(); err != nil {
		return fmt.Errorf("registry: record sent pushes: %w", err)
	}
	return nil
}
