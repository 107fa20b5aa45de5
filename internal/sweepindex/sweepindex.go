// Package sweepindex is the intent index of the background sweeps: the
// work they have to do, so that a sweep reads what is pending instead of
// scanning the keyspace.
//
// Something that must not be lost — an outbox marker of a dataset change,
// the note of a device removal — is written atomically, in a Lua script,
// into a key of its identity, whose hash tag puts it in the identity's slot.
// Before that script runs, its writer notes the identity (the member, e.g.
// "<pool>/<identity>") in one of Shards sorted sets, P:{sweep:<kind>:<n>},
// scored by the time of the note in milliseconds as the index's Redis
// tells it (Note). The script then refuses to run later than the deadline
// Note returned (Check), so that no commit lands long after its note. A
// sweep claims the members noted at least twice the window ago (Claim):
// their writers have committed or given up, so what the sweep then reads
// of their identities is all there is. It publishes, and then drops the
// members whose work it finished and hands back the others (Settle). A
// member noted again meanwhile has a new score and stays.
//
// A note without its commit (the writer died in between, or the script
// refused) is harmless: the sweep finds nothing to do for it and drops it.
// A member noted again and again, less than twice the window apart, is
// never claimed: work of its identity that must not wait for it to go
// quiet needs another way to be done, such as the identity's next writes
// (the outbox's left-behind changes are published so, see sync/relay).
// Members are transient: one for an identity with work pending or done in
// the last seconds, none for an idle one.
//
// A sweep touches only the index and the identities it names, never
// SCANs, and finds work as soon as it is twice the window old. Work noted
// by a version without the index is found by Adopt, a SCAN made once per
// deployment: it records in Redis that it completed, and is run again on
// request once no process of such a version is left.
package sweepindex

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/pushsync/pushsync/internal/redisx"
)

// Shards is how many sorted sets one index is spread over, so that they
// spread over the masters of a Redis Cluster. It is part of the layout:
// changing it strands the members of the sets no longer read.
const Shards = 32

// DefaultWindow is how long after its note a commit may still run unless
// New is told otherwise.
const DefaultWindow = 5 * time.Second

// ErrLate is the error of a commit refused because it reached Redis after
// the deadline of its note; nothing of it was applied, and it can be tried
// again.
var ErrLate = errors.New("the write reached Redis more than the sweep index's window after it was noted there, and was refused; nothing was applied, try again")

// Index is one kind of pending work. It is safe for concurrent use.
type Index struct {
	rdb    redis.UniversalClient
	keys   [Shards]string
	window time.Duration
	// adopted records when Adopt completed.
	adopted string
}

// New returns the index of kind under prefix, whose commits must run
// within window of their note (DefaultWindow if not positive). The
// members are claimed twice the window after they were noted; the window
// less the time a note takes to reach Redis bounds how far the clocks of
// two Redis Cluster masters may differ.
func New(rdb redis.UniversalClient, prefix, kind string, window time.Duration) *Index {
	if window <= 0 {
		window = DefaultWindow
	}
	x := &Index{rdb: rdb, window: window}
	for i := range x.keys {
		// Two ':' make it neither a pool's tag nor an identity's.
		x.keys[i] = prefix + ":{sweep:" + kind + ":" + strconv.Itoa(i) + "}"
	}
	x.adopted = prefix + ":{sweep:adopted:" + kind + "}"
	return x
}

func (x *Index) key(member string) string {
	h := fnv.New32a()
	_, _ = h.Write([]byte(member))
	return x.keys[h.Sum32()%Shards]
}

// Keys are the sorted sets of the index.
func (x *Index) Keys() []string { return x.keys[:] }

// luaNow is the Redis server's time in milliseconds.
const luaNow = `local function nowMs()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`

// noteScript scores member ARGV[1] of KEYS[1] by the time, and returns the
// deadline of its commit, ARGV[2] ms later.
var noteScript = redis.NewScript(luaNow + `
local now = nowMs()
redis.call('ZADD', KEYS[1], now, ARGV[1])
return now + tonumber(ARGV[2])
`)

// Check starts the Lua script of a commit: given as the script's last
// argument the deadline Note returned, it raises PSLATE once that has
// passed, before the script writes anything. A deadline of 0 is no
// deadline, for a script that commits nothing to sweep.
const Check = `
do
  local dl, t = tonumber(ARGV[#ARGV]), redis.call('TIME')
  if dl > 0 and tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) > dl then
    return redis.error_reply('PSLATE the commit came after the deadline of its sweep-index note')
  end
end
`

// Late tells whether err is the error of a script that Check refused; its
// caller reports it as ErrLate.
func Late(err error) bool { return err != nil && strings.Contains(err.Error(), "PSLATE") }

// Note notes member, in one round trip with whatever with adds to the
// pipeline (nil: nothing), and returns the deadline of the commit it
// precedes, to pass as the last argument of the commit's script (see
// Check). The error is the note's; the commands of with report their own.
func (x *Index) Note(ctx context.Context, member string, with func(p redis.Pipeliner)) (int64, error) {
	keys, args := []string{x.key(member)}, []any{member, x.window.Milliseconds()}
	var note *redis.Cmd
	_, _ = x.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		if with != nil {
			with(p)
		}
		note = noteScript.EvalSha(ctx, p, keys, args...)
		return nil
	})
	if redisx.IsNoScript(note.Err()) {
		// A Redis that restarted or failed over forgot it; Run loads it.
		note = noteScript.Run(ctx, x.rdb, keys, args...)
	}
	deadline, err := note.Int64()
	if err != nil {
		return 0, fmt.Errorf("note in the sweep index: %w", err)
	}
	return deadline, nil
}

// Claim is a member a sweep claimed, to hand to Settle.
type Claim struct {
	Member string
	key    string
	// at is when it was claimed and until when, the index's time in ms.
	at, until int64
}

// claimScript claims up to ARGV[2] members of KEYS[1] scored at least
// ARGV[1] ms ago, scoring them by the end of the claim, ARGV[3] ms from
// now, so that no other sweep claims them meanwhile. It returns {now, end
// of the claim, members...}.
var claimScript = redis.NewScript(luaNow + `
local now = nowMs()
local got = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]), 'LIMIT', 0, tonumber(ARGV[2]))
local untilMs = now + tonumber(ARGV[3])
for _, m in ipairs(got) do redis.call('ZADD', KEYS[1], untilMs, m) end
table.insert(got, 1, untilMs)
table.insert(got, 1, now)
return got
`)

// Claim claims up to limit members of each shard that were noted at least
// twice the window ago, oldest first, for lease: until then no other Claim
// returns them. A claimer that dies or overruns its lease leaves them to
// the next claim after that. The claimer reads what the members name,
// does the work and hands the claims to Settle.
func (x *Index) Claim(ctx context.Context, limit int, lease time.Duration) ([]Claim, error) {
	age := 2 * x.window.Milliseconds()
	jobs := make([]job, Shards)
	for i, k := range x.keys {
		jobs[i] = job{k, []any{age, limit, lease.Milliseconds()}}
	}
	cmds, err := x.eval(ctx, claimScript, jobs)
	if err != nil {
		return nil, fmt.Errorf("claim from the sweep index: %w", err)
	}
	var out []Claim
	for i, c := range cmds {
		res, err := c.Slice()
		if err != nil || len(res) < 2 {
			return nil, fmt.Errorf("claim from the sweep index %s: %v reply %v", x.keys[i], err, res)
		}
		at, _ := res[0].(int64)
		until, _ := res[1].(int64)
		for _, m := range res[2:] {
			s, _ := m.(string)
			out = append(out, Claim{Member: s, key: x.keys[i], at: at, until: until})
		}
	}
	return out, nil
}

// Claimed is a claimed member and the hash of pending work it names.
type Claimed struct {
	Claim
	Hash map[string]string
}

// ClaimHashes claims as Claim does, and reads in one pipeline the hash
// that each member names (key returns its key, false for a member that
// names none). Members whose hash is empty, or that name none, have no
// work pending, and are settled done at once; it returns the others. A
// claim that finds only such members is followed by another, until one
// finds work or claims nothing: most notes are of writes that did their
// work themselves, and a sweep that took an empty answer for the end of
// the index would leave the rest of it, work included, for its next run,
// the index growing whenever more identities are noted between two
// sweeps than one claim takes.
func (x *Index) ClaimHashes(ctx context.Context, limit int, lease time.Duration, key func(member string) (string, bool)) ([]Claimed, error) {
	for {
		out, claimed, err := x.claimHashes(ctx, limit, lease, key)
		if err != nil || len(out) > 0 || claimed == 0 {
			return out, err
		}
	}
}

// claimHashes is one claim of ClaimHashes; it also returns how many
// members it claimed.
func (x *Index) claimHashes(ctx context.Context, limit int, lease time.Duration, key func(member string) (string, bool)) ([]Claimed, int, error) {
	claims, err := x.Claim(ctx, limit, lease)
	if err != nil || len(claims) == 0 {
		return nil, 0, err
	}
	cmds := make([]*redis.MapStringStringCmd, len(claims))
	_, err = x.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, c := range claims {
			if k, ok := key(c.Member); ok {
				cmds[i] = p.HGetAll(ctx, k)
			}
		}
		return nil
	})
	if err != nil {
		// Left claimed: the next claim after the lease finds them.
		return nil, len(claims), fmt.Errorf("read what the sweep index names: %w", err)
	}
	var (
		out   []Claimed
		empty []Claim
	)
	for i, c := range claims {
		if cmds[i] == nil || len(cmds[i].Val()) == 0 {
			empty = append(empty, c)
			continue
		}
		out = append(out, Claimed{Claim: c, Hash: cmds[i].Val()})
	}
	return out, len(claims), x.Settle(ctx, empty, nil)
}

// settleScript ends claims that are still held: of KEYS[1], the members in
// ARGV[3..] as pairs (op, member) still scored by the claim's end ARGV[1]
// are dropped (op "d") or scored ARGV[2], when they were claimed, again
// (op "r"): claimable once more a window after. Past the claim's end it
// does nothing, whatever the scores.
var settleScript = redis.NewScript(luaNow + `
if nowMs() >= tonumber(ARGV[1]) then return 0 end
local n = 0
for i = 3, #ARGV, 2 do
  local s = redis.call('ZSCORE', KEYS[1], ARGV[i + 1])
  if s and tonumber(s) == tonumber(ARGV[1]) then
    if ARGV[i] == 'd' then redis.call('ZREM', KEYS[1], ARGV[i + 1]) else redis.call('ZADD', KEYS[1], ARGV[2], ARGV[i + 1]) end
    n = n + 1
  end
end
return n
`)

// Settle ends claims: those in done, whose work is finished, leave the
// index; those in left are claimable again twice the window after they
// were claimed. A member noted again since its claim stays as that note
// left it, for the work it announces.
func (x *Index) Settle(ctx context.Context, done, left []Claim) error {
	type group struct {
		key       string
		at, until int64
	}
	var (
		order  []group
		groups = map[group][]any{}
	)
	add := func(cs []Claim, op string) {
		for _, c := range cs {
			g := group{c.key, c.at, c.until}
			if _, ok := groups[g]; !ok {
				order = append(order, g)
				groups[g] = []any{c.until, c.at}
			}
			groups[g] = append(groups[g], op, c.Member)
		}
	}
	add(done, "d")
	add(left, "r")
	jobs := make([]job, len(order))
	for i, g := range order {
		jobs[i] = job{g.key, groups[g]}
	}
	if _, err := x.eval(ctx, settleScript, jobs); err != nil {
		return fmt.Errorf("settle claims of the sweep index: %w", err)
	}
	return nil
}

// job is one run of a script on one shard.
type job struct {
	key  string
	args []any
}

// eval runs script for every job in one pipeline, and returns the replies
// in order. A script Redis forgot is loaded and run again.
func (x *Index) eval(ctx context.Context, script *redis.Script, jobs []job) ([]*redis.Cmd, error) {
	cmds := make([]*redis.Cmd, len(jobs))
	run := func(only func(i int) bool) {
		_, _ = x.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, j := range jobs {
				if only(i) {
					cmds[i] = script.EvalSha(ctx, p, []string{j.key}, j.args...)
				}
			}
			return nil
		})
	}
	if len(jobs) == 0 {
		return cmds, nil
	}
	run(func(int) bool { return true })
	missing := func(i int) bool { return redisx.IsNoScript(cmds[i].Err()) }
	for i := range cmds {
		if missing(i) {
			if err := redisx.Load(ctx, x.rdb, script); err != nil {
				return nil, err
			}
			run(missing)
			break
		}
	}
	for _, c := range cmds {
		if c.Err() != nil {
			return nil, c.Err()
		}
	}
	return cmds, nil
}

// Adoption is what Adopt did.
type Adoption struct {
	// Skipped is whether an adoption had completed already, at Done, so
	// that Adopt did not scan.
	Skipped bool
	// Done is when the adoption completed: this one, or the one recorded.
	Done time.Time
	// Scanned is how many keys the scan found, Adopted how many members
	// it noted anew.
	Scanned, Adopted int
}

// Log logs what Adopt did with the work it looked for, named by what
// ("outbox markers"); again says whether it was asked to scan again.
func (a Adoption) Log(log zerolog.Logger, what string, again bool) {
	switch {
	case a.Skipped:
		log.Info().Time("adopted_at", a.Done).
			Msgf("%s of an earlier version were adopted into the sweep index already; not scanning for them (pushsyncd adopt does it again)", what)
	case again:
		log.Info().Int("scanned", a.Scanned).Int("adopted", a.Adopted).
			Msgf("adopted the %s of an earlier version into the sweep index; the sweeps publish them", what)
	default:
		log.Info().Int("scanned", a.Scanned).Int("adopted", a.Adopted).
			Msgf("scanned the keyspace for %s of an earlier version; those adopted into the sweep index are published by its sweeps", what)
	}
}

// Adopt notes every key matching the SCAN pattern match that member names
// (false: none), for work written by a version that did not note it. It
// SCANs the whole keyspace, every master's on Redis Cluster, once, and
// then records in Redis, in P:{sweep:adopted:<kind>}, that it completed:
// an Adopt that finds that record does not scan, unless again, for the
// work that processes of such a version went on writing after it. An
// Adopt cut short records nothing; several at once each scan. An adopted
// member is claimable at once; one noted already keeps its score.
func (x *Index) Adopt(ctx context.Context, match string, member func(key string) (string, bool), again bool) (Adoption, error) {
	if !again {
		at, err := x.rdb.Get(ctx, x.adopted).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return Adoption{}, fmt.Errorf("read whether the sweep index was adopted into: %w", err)
		}
		// A record that does not parse is scanned over and written anew.
		if done, perr := time.Parse(time.RFC3339Nano, at); err == nil && perr == nil {
			return Adoption{Skipped: true, Done: done}, nil
		}
	}
	var (
		mu sync.Mutex
		a  Adoption
	)
	err := redisx.Scan(ctx, x.rdb, match, func(ctx context.Context, keys []string) error {
		var cmds []*redis.IntCmd
		_, err := x.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range keys {
				if m, ok := member(k); ok {
					cmds = append(cmds, p.ZAddNX(ctx, x.key(m), redis.Z{Score: 0, Member: m}))
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		mu.Lock()
		a.Scanned += len(keys)
		for _, c := range cmds {
			a.Adopted += int(c.Val())
		}
		mu.Unlock()
		return nil
	})
	if err != nil {
		return a, fmt.Errorf("adopt into the sweep index: %w", err)
	}
	a.Done = time.Now().UTC()
	if err := x.rdb.Set(ctx, x.adopted, a.Done.Format(time.RFC3339Nano), 0).Err(); err != nil {
		return a, fmt.Errorf("record that the sweep index was adopted into: %w", err)
	}
	return a, nil
}
