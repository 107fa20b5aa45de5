// Package batchconn makes network connections that combine writes.
//
// An HTTP/2 client writes each request as separate frames under a lock,
// with a flush (one system call) for the headers and one for the body.
// Under load the lock is the queue: streams wait while one flush is in the
// kernel. A Conn from this package returns from Write at once and leaves
// the system call to its own goroutine, which writes everything queued
// since its last call in one: at a hundred requests in flight, a few
// system calls carry them all; a lone request costs one goroutine switch
// more than before. Order is kept, and a failed write fails every write
// after it, as on the connection itself.
package batchconn

import (
	"errors"
	"net"
	"runtime"
	"sync"
)

// maxQueued bounds the bytes a Conn queues; a Write beyond it waits for
// the writer, so a slow peer slows its writers rather than growing memory.
const maxQueued = 1 << 20

// Conn is a net.Conn whose writes are queued and written behind by one
// goroutine. Read, deadlines and addresses are the wrapped connection's.
type Conn struct {
	net.Conn

	mu      sync.Mutex
	queued  []byte // written by callers, not yet handed to the kernel
	spare   []byte
	writing bool // the writer goroutine has work
	err     error
	closed  bool
	room    *sync.Cond    // signalled when queued shrinks
	wake    chan struct{} // capacity 1
}

// New wraps c.
func New(c net.Conn) *Conn {
	bc := &Conn{Conn: c, wake: make(chan struct{}, 1)}
	bc.room = sync.NewCond(&bc.mu)
	go bc.writer()
	return bc
}

// Write queues b and returns. An error of an earlier write is returned
// instead, and nothing is queued.
func (c *Conn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.err == nil && !c.closed && len(c.queued) > 0 && len(c.queued)+len(b) > maxQueued {
		c.room.Wait()
	}
	switch {
	case c.err != nil:
		return 0, c.err
	case c.closed:
		return 0, net.ErrClosed
	}
	c.queued = append(c.queued, b...)
	if !c.writing {
		c.writing = true
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
	return len(b), nil
}

func (c *Conn) writer() {
	for range c.wake {
		// Let the goroutines that are ready to run first, so that the
		// writes they are about to make join this system call.
		runtime.Gosched()
		c.mu.Lock()
		for len(c.queued) > 0 && c.err == nil {
			out := c.queued
			c.queued, c.spare = c.spare[:0], nil
			c.mu.Unlock()
			_, err := c.Conn.Write(out)
			c.mu.Lock()
			if err != nil && c.err == nil {
				c.err = err
			}
			c.spare = out[:0]
			c.room.Broadcast()
		}
		c.writing = false
		c.room.Broadcast()
		closed := c.closed
		c.mu.Unlock()
		if closed {
			return
		}
	}
}

// Close closes the connection; writes still queued are dropped.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return net.ErrClosed
	}
	c.closed = true
	c.queued = nil
	c.room.Broadcast()
	if !c.writing {
		c.writing = true
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
	c.mu.Unlock()
	return c.Conn.Close()
}

// CloseWrite shuts down the writing side after the queued writes, when the
// wrapped connection can.
func (c *Conn) CloseWrite() error {
	cw, ok := c.Conn.(interface{ CloseWrite() error })
	if !ok {
		return errors.New("batchconn: connection cannot close its writing side")
	}
	c.mu.Lock()
	for c.writing && c.err == nil {
		c.room.Wait()
	}
	c.mu.Unlock()
	return cw.CloseWrite()
}
