package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pushsync/pushsync/config"
	"github.com/pushsync/pushsync/registry"
)

// measureMemory registers -memory-devices devices, -devices per identity
// and each subscribed to one dataset, in a redis-server of its own with
// the default settings, through the registry as the sync API does, and
// reports Redis's used_memory growth per device; then once more after
// one push to each device, which adds the sent-state the dispatcher keeps.
func measureMemory(ctx context.Context, o *options, dir string, pr *progress) (*MemoryFig, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errors.New("redis-server is not on PATH (Debian: apt-get install redis-server)")
	}
	addr := freeAddr()
	_, port, _ := strings.Cut(addr, ":")
	rdir := filepath.Join(dir, "redis-memory")
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no",
		"--dir", dir, "--logfile", rdir+".log")
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 64})
	defer rdb.Close()
	for deadline := time.Now().Add(10 * time.Second); rdb.Ping(ctx).Err() != nil; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("redis-server on %s did not answer; see %s.log", addr, rdir)
		}
	}
	info := func(field string) (string, error) {
		s, err := rdb.Info(ctx, "memory", "server").Result()
		if err != nil {
			return "", err
		}
		for _, line := range strings.Split(s, "\r\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && k == field {
				return v, nil
			}
		}
		return "", fmt.Errorf("INFO has no %s", field)
	}
	// The data's memory: used_memory without the buffers of the bench's
	// own client connections, which grow with its concurrency.
	used := func() (int64, error) {
		var n [2]int64
		for i, field := range []string{"used_memory", "mem_clients_normal"} {
			v, err := info(field)
			if err != nil {
				return 0, err
			}
			if n[i], err = strconv.ParseInt(v, 10, 64); err != nil {
				return 0, fmt.Errorf("INFO %s: %w", field, err)
			}
		}
		return n[0] - n[1], nil
	}
	version, err := info("redis_version")
	if err != nil {
		return nil, err
	}
	// The production key prefix and identifiers of the real length, so
	// the key names weigh what they will.
	reg := registry.New(rdb, registry.Options{KeyPrefix: config.Default().Redis.KeyPrefix})
	pool := "us-east-1:" + uuidish(0x3e3, 1)
	identities := o.memoryDevices / o.devices
	before, err := used()
	if err != nil {
		return nil, err
	}
	pr.start(fmt.Sprintf("memory: registering %d devices", identities*o.devices), "identities")
	start := time.Now()
	err = parallel(ctx, identities, 64, func(d, t int64) { pr.set(d, t) }, func(ctx context.Context, i int) error {
		apns, fcm := deviceTokens(i, o.devices)
		return registerIdentity(ctx, reg, pool, "us-east-1:"+uuidish(i+1, 0x3e3), apns, fcm)
	})
	pr.stop()
	if err != nil {
		return nil, err
	}
	seed := time.Since(start)
	after, err := used()
	if err != nil {
		return nil, err
	}
	devices := identities * o.devices
	fig := &MemoryFig{
		Devices: devices, Identities: identities, RedisVersion: version,
		BytesPerDevice:      float64(after-before) / float64(devices),
		SeedSeconds:         seed.Seconds(),
		RegistrationsPerSec: float64(devices) / seed.Seconds(),
	}
	pr.start("memory: one push to every device", "identities")
	err = parallel(ctx, identities, 64, func(d, t int64) { pr.set(d, t) }, func(ctx context.Context, i int) error {
		id := "us-east-1:" + uuidish(i+1, 0x3e3)
		r, err := reg.Registration(ctx, pool, id)
		if err != nil {
			return err
		}
		ids := make([]string, 0, len(r.Devices))
		for _, d := range r.Subscribers(dataset) {
			ids = append(ids, d.ID)
		}
		return reg.RecordSent(ctx, pool, id, dataset, 1, ids, time.Time{}, 0)
	})
	pr.stop()
	if err != nil {
		return nil, err
	}
	sent, err := used()
	if err != nil {
		return nil, err
	}
	fig.BytesPerDeviceSent = float64(sent-before) / float64(devices)
	return fig, nil
}
