//go:build !linux

package supervisor

// releaseExecutablePages is Linux-only; elsewhere it does nothing.
func releaseExecutablePages() (int64, error) { return 0, nil }
