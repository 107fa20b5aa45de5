package event

// SetReplayed sets the function called between a replay's publication and
// its letter's removal, until the returned function restores none.
func SetReplayed(f func(seq uint64)) (restore func()) {
	replayed = f
	return func() { replayed = nil }
}
