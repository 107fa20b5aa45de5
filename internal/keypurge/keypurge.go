// Package keypurge removes keys found by SCAN in bounded steps that can be
// resumed: each step scans and removes until its deadline and returns a
// cursor to continue from, so that a purge of millions of keys never runs
// one long command and a purge that was interrupted is finished by running
// it again. It works on one Redis and on Redis Cluster, where it scans
// every master in turn.
//
// A cursor names its phase, and the set of phases it was made for, so that
// a purge resumed by a version whose phases differ (one added, removed or
// moved) starts again from the first phase instead of resuming in another
// phase than the one it stopped in: starting again finds only what is
// left, while resuming in the wrong phase would leave keys behind.
package keypurge

import (
	"context"
	"fmt"
	"hash/fnv"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Phase is one pass of a purge.
type Phase struct {
	// Name names the phase in cursors: ASCII letters, digits and '-',
	// unique among the phases of a purge. It must not change meaning
	// between versions.
	Name string
	// Match is the SCAN MATCH pattern of the keys the pass looks at.
	Match string
	// Select returns the keys, among those SCAN found, to remove. If nil,
	// every key found is removed.
	Select func(ctx context.Context, keys []string) ([]string, error)
	// Run, if set, makes the phase one call instead of a pass of SCAN:
	// it removes what it removes and returns how many items it removed.
	// It must be safe to run again.
	Run func(ctx context.Context) (int64, error)
}

// Options bound the work of one step.
type Options struct {
	// Deadline is when a step returns with a cursor to continue from; it
	// always completes the batch it has begun.
	Deadline time.Time
	// Count is the SCAN COUNT hint, and so about the most keys removed
	// by one pipeline. If not set, 500.
	Count int64
	// Guard is called before every removal; an error stops the step
	// before it removes anything more, and is returned.
	Guard func(ctx context.Context) error
}

// Result tells what one step did and where the purge stands after it.
type Result struct {
	// Removed counts the keys (and the items of Run phases) the step
	// removed.
	Removed int64
	// Scanned counts the keys the step's SCAN calls found matching its
	// phases' patterns, removed or not.
	Scanned int64
	// Next is the cursor to continue from, "" when every phase is done.
	Next string
	// Phase names the phase the purge continues in, "" when it is done.
	Phase string
	// Node is the master (from 1, in the order of their addresses) of
	// Nodes that Phase scans next; both are 0 when the purge is done.
	Node, Nodes int
}

// Step runs the phases from cursor ("" to start) until they are done or
// the deadline passes. It returns what it removed and the cursor to
// continue from, which it also returns with an error: the step can be
// tried again from there. A cursor made for other phases (by a version
// whose phases differ), or in the form of an earlier version, starts the
// phases again; one that does not parse, or names a phase that is not
// among them, is an error wrapping ErrBadCursor.
func Step(ctx context.Context, rdb redis.UniversalClient, phases []Phase, cursor string, opts Options) (Result, error) {
	if opts.Count <= 0 {
		opts.Count = 500
	}
	set, err := phaseSet(phases)
	if err != nil {
		return Result{}, err
	}
	phase, node, cur, err := parseCursor(cursor, set, phases)
	if err != nil {
		return Result{}, err
	}
	nodes, err := masters(ctx, rdb)
	if err != nil {
		return Result{Next: cursor}, err
	}
	if node >= len(nodes) {
		// The cluster has fewer masters than when the cursor was made:
		// start the phase again, which finds only what is left.
		node, cur = 0, 0
	}
	var res Result
	// at returns res positioned at phase, node and cur.
	at := func(phase, node int, cur uint64) Result {
		if phase == len(phases) {
			res.Next, res.Phase, res.Node, res.Nodes = "", "", 0, 0
			return res
		}
		res.Next = set + "." + phases[phase].Name + "." + strconv.Itoa(node) + "." + strconv.FormatUint(cur, 10)
		res.Phase, res.Node, res.Nodes = phases[phase].Name, node+1, len(nodes)
		return res
	}
	for phase < len(phases) {
		p := phases[phase]
		if p.Run != nil {
			if opts.Guard != nil {
				if err := opts.Guard(ctx); err != nil {
					return at(phase, 0, 0), err
				}
			}
			k, err := p.Run(ctx)
			res.Removed += k
			if err != nil {
				return at(phase, 0, 0), err
			}
			phase, node, cur = phase+1, 0, 0
			continue
		}
		keys, n, err := nodes[node].Scan(ctx, cur, p.Match, opts.Count).Result()
		if err != nil {
			return at(phase, node, cur), fmt.Errorf("scan %s: %w", p.Match, err)
		}
		res.Scanned += int64(len(keys))
		if len(keys) > 0 && p.Select != nil {
			if keys, err = p.Select(ctx, keys); err != nil {
				return at(phase, node, cur), err
			}
		}
		if len(keys) > 0 {
			if opts.Guard != nil {
				if err := opts.Guard(ctx); err != nil {
					return at(phase, node, cur), err
				}
			}
			k, err := unlink(ctx, rdb, keys)
			res.Removed += k
			if err != nil {
				return at(phase, node, cur), err
			}
		}
		if cur = n; cur == 0 {
			if node++; node == len(nodes) {
				phase, node = phase+1, 0
			}
		}
		if phase < len(phases) && !opts.Deadline.IsZero() && !time.Now().Before(opts.Deadline) {
			return at(phase, node, cur), nil
		}
	}
	return at(phase, 0, 0), nil
}

// Start checks cursor as Step does and returns it, or for "" the cursor
// of the start of phases (what Step given "" begins with), for a caller
// that must answer "not done" before it steps.
func Start(phases []Phase, cursor string) (string, error) {
	set, err := phaseSet(phases)
	if err != nil {
		return "", err
	}
	if _, _, _, err := parseCursor(cursor, set, phases); err != nil || cursor != "" || len(phases) == 0 {
		return cursor, err
	}
	return set + "." + phases[0].Name + ".0.0", nil
}

// unlink removes keys with one UNLINK each, in one pipeline, which a
// cluster client splits by node: keys of different slots cannot share a
// command there.
func unlink(ctx context.Context, rdb redis.UniversalClient, keys []string) (int64, error) {
	cmds := make([]*redis.IntCmd, len(keys))
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.Unlink(ctx, k)
		}
		return nil
	})
	var n int64
	for _, c := range cmds {
		n += c.Val()
	}
	if err != nil {
		return n, fmt.Errorf("unlink: %w", err)
	}
	return n, nil
}

// masters returns the clients to scan: on Redis Cluster each master, in
// the order of their addresses, so that a cursor names the same node in
// the next step; elsewhere the client itself.
func masters(ctx context.Context, rdb redis.UniversalClient) ([]redis.Cmdable, error) {
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return []redis.Cmdable{rdb}, nil
	}
	var (
		clients []*redis.Client
		mu      sync.Mutex
	)
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		mu.Lock()
		clients = append(clients, c)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list cluster masters: %w", err)
	}
	sort.Slice(clients, func(i, j int) bool { return clients[i].Options().Addr < clients[j].Options().Addr })
	out := make([]redis.Cmdable, len(clients))
	for i, c := range clients {
		out[i] = c
	}
	return out, nil
}

// A cursor is "<phase set>.<phase name>.<node>.<SCAN cursor>", the phase
// set a hash of the names of every phase, in order. Earlier versions made
// cursors "<phase index>.<node>.<SCAN cursor>".

// phaseSet checks the phases' names and returns the hash that tells
// cursors made for these phases from those made for others.
func phaseSet(phases []Phase) (string, error) {
	h := fnv.New32a()
	seen := make(map[string]bool, len(phases))
	for _, p := range phases {
		if p.Name == "" || strings.Trim(p.Name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") != "" || seen[p.Name] {
			return "", fmt.Errorf("keypurge: phase name %q must be unique, of ASCII letters, digits and '-'", p.Name)
		}
		seen[p.Name] = true
		h.Write([]byte(p.Name + "\n"))
	}
	return fmt.Sprintf("%08x", h.Sum32()), nil
}

// ErrBadCursor is wrapped by the error for a cursor that does not parse.
var ErrBadCursor = fmt.Errorf("not a cursor a purge step returned")

// parseCursor returns where cursor s resumes phases, whose set is set:
// the start for "", a cursor of other phases or one of an earlier version.
func parseCursor(s, set string, phases []Phase) (phase, node int, cur uint64, err error) {
	if s == "" {
		return 0, 0, 0, nil
	}
	bad := fmt.Errorf("cursor %q: %w", s, ErrBadCursor)
	parts := strings.Split(s, ".")
	if len(parts) == 3 && isDigits(parts[0]) && isDigits(parts[1]) && isDigits(parts[2]) {
		return 0, 0, 0, nil // an earlier version's, by phase index: start again
	}
	if len(parts) != 4 || !isDigits(parts[2]) || !isDigits(parts[3]) {
		return 0, 0, 0, bad
	}
	n, err1 := strconv.Atoi(parts[2])
	c, err2 := strconv.ParseUint(parts[3], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, 0, bad
	}
	if parts[0] != set {
		return 0, 0, 0, nil // made for other phases: start again
	}
	for i, p := range phases {
		if p.Name == parts[1] {
			return i, n, c, nil
		}
	}
	return 0, 0, 0, bad
}

func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}
