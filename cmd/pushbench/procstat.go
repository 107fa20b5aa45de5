package main

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of utime and stime in /proc/<pid>/stat: USER_HZ,
// which is 100 on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// cpuTime returns the user plus system CPU time a process has used so far,
// all its threads included, read from /proc/<pid>/stat.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces;
	// the fields after its closing parenthesis start with field 3.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime or stime", pid)
	}
	return time.Duration(utime+stime) * clockTick, nil
}

// procValues reads the "name: number" lines of a /proc/<pid> file (status
// or io) and returns the numbers of the names asked for, each of which
// must be there; a " kB" unit is dropped.
func procValues(pid int, file string, names ...string) ([]int64, error) {
	path := fmt.Sprintf("/proc/%d/%s", pid, file)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(names))
	found := 0
	for _, line := range strings.Split(string(b), "\n") {
		name, v, ok := strings.Cut(line, ":")
		i := slices.Index(names, name)
		if !ok || i < 0 {
			continue
		}
		if out[i], err = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", path, name, err)
		}
		found++
	}
	if found != len(names) {
		return nil, fmt.Errorf("%s: not all of %s", path, strings.Join(names, ", "))
	}
	return out, nil
}

// memory returns a process's resident set size now and its peak so far
// (VmRSS and VmHWM of /proc/<pid>/status), in bytes.
func memory(pid int) (rss, peak int64, err error) {
	v, err := procValues(pid, "status", "VmRSS", "VmHWM")
	if err != nil {
		return 0, 0, err
	}
	return v[0] << 10, v[1] << 10, nil
}

// resetPeak starts a process's peak resident set (VmHWM) again from its
// resident set now, by writing 5 to /proc/<pid>/clear_refs.
func resetPeak(pid int) error {
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		return fmt.Errorf("reset the peak resident set of process %d: %w", pid, err)
	}
	return nil
}

// syscalls returns how many read and write system calls a process has
// made so far (syscr and syscw of /proc/<pid>/io).
func syscalls(pid int) (reads, writes int64, err error) {
	v, err := procValues(pid, "io", "syscr", "syscw")
	if err != nil {
		return 0, 0, err
	}
	return v[0], v[1], nil
}

// usage is what processes have used so far.
type usage struct {
	cpu      time.Duration // user + system, summed
	syscalls int64         // reads + writes, summed
	peakRSS  int64         // the largest process's peak since the previous reading
}

// cpuTimeOrNone is cpuTime, or -1 when pid is 0 or cannot be read.
func cpuTimeOrNone(pid int) time.Duration {
	if pid == 0 {
		return -1
	}
	c, err := cpuTime(pid)
	if err != nil {
		return -1
	}
	return c
}

// usageOf reads the usage of processes, and starts their peak resident
// sets again: the next reading's peak is that of the time in between.
func usageOf(pids ...int) (usage, error) {
	var u usage
	for _, pid := range pids {
		c, err := cpuTime(pid)
		if err != nil {
			return usage{}, err
		}
		r, w, err := syscalls(pid)
		if err != nil {
			return usage{}, err
		}
		_, peak, err := memory(pid)
		if err != nil {
			return usage{}, err
		}
		if err := resetPeak(pid); err != nil {
			return usage{}, err
		}
		u.cpu, u.syscalls, u.peakRSS = u.cpu+c, u.syscalls+r+w, max(u.peakRSS, peak)
	}
	return u, nil
}

// schedStat returns how long a process's threads have waited, runnable,
// for a CPU, and how many times they were put on one, summed over the
// threads it has now (/proc/<pid>/task/<tid>/schedstat: time on a CPU,
// time waiting on a run queue, timeslices). A thread that already exited
// is not counted; Go runtimes keep theirs.
func schedStat(pid int) (wait time.Duration, runs int64, err error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0, err
	}
	for _, t := range tasks {
		b, err := os.ReadFile(dir + "/" + t.Name() + "/schedstat")
		if err != nil {
			continue // the thread exited since the listing
		}
		f := strings.Fields(string(b))
		if len(f) != 3 {
			return 0, 0, fmt.Errorf("%s/%s/schedstat: %d fields, want 3", dir, t.Name(), len(f))
		}
		w, err1 := strconv.ParseInt(f[1], 10, 64)
		n, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil {
			return 0, 0, fmt.Errorf("%s/%s/schedstat: %q", dir, t.Name(), b)
		}
		wait += time.Duration(w)
		runs += n
	}
	return wait, runs, nil
}

// machineCPU returns the CPU time the whole machine has been busy and its
// total so far, all CPUs summed, from the "cpu" line of /proc/stat: its
// first eight fields, busy being all but idle and iowait (the guest
// fields after them are counted in user and nice already).
func machineCPU() (busy, total time.Duration, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: first line %q", line)
	}
	var sum, idle int64
	for i, s := range f[1:min(len(f), 9)] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %q: %w", line, err)
		}
		sum += v
		if i == 3 || i == 4 { // idle, iowait
			idle += v
		}
	}
	return time.Duration(sum-idle) * clockTick, time.Duration(sum) * clockTick, nil
}

// contention is how crowded the machine's CPUs were for the processes of
// the pipeline that pushbench can see.
type contention struct {
	busy, total time.Duration // the machine's
	wait        time.Duration // the processes' threads, runnable but waiting for a CPU
	runs        int64         // times those threads were put on a CPU
}

// contentionOf reads the machine's CPU time and the scheduling figures of
// processes.
func contentionOf(pids ...int) (contention, error) {
	var c contention
	var err error
	if c.busy, c.total, err = machineCPU(); err != nil {
		return c, err
	}
	for _, pid := range pids {
		w, n, err := schedStat(pid)
		if err != nil {
			return c, err
		}
		c.wait, c.runs = c.wait+w, c.runs+n
	}
	return c, nil
}
