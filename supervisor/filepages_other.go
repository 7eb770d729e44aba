//go:build !linux

package supervisor

// releaseFilePages is Linux-only; elsewhere it does nothing.
func releaseFilePages() (int64, error) { return 0, nil }
