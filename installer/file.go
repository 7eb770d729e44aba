package installer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// StatePath records the hash of every file the installer wrote, so a hand
// edit is noticed on the next run.
const StatePath = "/var/lib/hearth-installer/state.json"

// State is what the installer remembers between runs.
type State struct {
	// Files maps a host path to the sha256 of the content last written.
	Files map[string]string `json:"files"`
	// Marks are step-private values (e.g. the config hash the service was
	// last started with).
	Marks map[string]string `json:"marks,omitempty"`
}

// LoadState reads the installer's state; none yet is an empty state.
func (h *Host) LoadState() (*State, error) {
	st := &State{Files: map[string]string{}, Marks: map[string]string{}}
	b, ok, err := h.ReadFile(StatePath)
	if err != nil || !ok {
		return st, err
	}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, fmt.Errorf("installer state %s is damaged (%v); move it away to start afresh", StatePath, err)
	}
	if st.Files == nil {
		st.Files = map[string]string{}
	}
	if st.Marks == nil {
		st.Marks = map[string]string{}
	}
	return st, nil
}

// UpdateState changes the recorded state atomically.
func (h *Host) UpdateState(change func(*State)) error {
	st, err := h.LoadState()
	if err != nil {
		return err
	}
	change(st)
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("installer state: %w", err)
	}
	return h.writeAtomic(StatePath, append(b, '\n'), 0o600, nil)
}

// Hash is the content hash recorded for managed files.
func Hash(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// File is a file the installer manages: rendered by a step, compared with
// the disk, written atomically.
type File struct {
	Path    string // absolute host path
	Content []byte
	Mode    fs.FileMode
	// Owner is "user:group" for chown; empty leaves root's default.
	Owner string
	// Check validates the candidate, written at a temporary host path next
	// to Path, before it replaces the old file (e.g. a config loader).
	Check func(ctx context.Context, h *Host, candidate string) error
	// Verify runs once the new file is in place (e.g. "sshd -t" or
	// "nginx -t", which read the whole configuration). If it fails, the old
	// file is put back (or the new one removed) and the error returned.
	Verify func(ctx context.Context, h *Host) error
	// Secret hides the content from plans.
	Secret bool
}

// FileActions plans a managed file: nothing when the disk already holds it,
// a write with a diff otherwise, and a refusal when the file on disk was
// changed by someone else since the installer last wrote it (or existed
// before) unless h.Force.
func (h *Host) FileActions(f File) ([]Action, error) {
	st, err := h.LoadState()
	if err != nil {
		return nil, err
	}
	cur, exists, err := h.ReadFile(f.Path)
	if err != nil {
		return nil, err
	}
	want := Hash(f.Content)
	if exists && bytes.Equal(cur, f.Content) {
		var acts []Action
		if fi, err := os.Stat(h.Path(f.Path)); err == nil && fi.Mode().Perm() != f.Mode.Perm() {
			acts = append(acts, Action{
				Summary: fmt.Sprintf("chmod %o %s", f.Mode.Perm(), f.Path),
				Do: func(ctx context.Context, h *Host) error {
					return os.Chmod(h.Path(f.Path), f.Mode.Perm())
				},
			})
		}
		if f.Owner != "" {
			ok, err := h.ownedBy(f.Path, f.Owner)
			if err != nil {
				return nil, err
			}
			if !ok {
				acts = append(acts, RunAction("chown", f.Owner, h.Path(f.Path)))
			}
		}
		if st.Files[f.Path] != want {
			acts = append(acts, Action{
				Summary: "record " + f.Path + " as managed (content already right)",
				Do: func(ctx context.Context, h *Host) error {
					return h.UpdateState(func(s *State) { s.Files[f.Path] = want })
				},
			})
		}
		return acts, nil
	}
	a := Action{Do: func(ctx context.Context, h *Host) error { return h.WriteManaged(ctx, f) }}
	switch {
	case !exists:
		a.Summary = fmt.Sprintf("create %s (mode %o)", f.Path, f.Mode.Perm())
		if !f.Secret {
			a.Detail = string(f.Content)
		} else {
			a.Detail = "(content hidden: it holds a secret)"
		}
	default:
		a.Summary = fmt.Sprintf("update %s", f.Path)
		if f.Secret {
			a.Detail = "(diff hidden: the file holds a secret)"
		} else {
			a.Detail = Diff(string(cur), string(f.Content))
		}
		rec, known := st.Files[f.Path]
		if !known {
			a.Blocked = fmt.Sprintf("%s exists and was not written by hearth setup; move it away or use --force to replace it", f.Path)
		} else if rec != Hash(cur) {
			a.Blocked = fmt.Sprintf("%s was edited by hand since setup wrote it; keep your edit by copying it elsewhere, then rerun with --force", f.Path)
		}
		if a.Blocked != "" && h.Force {
			a.Summary += " (overwriting a hand edit: --force)"
			a.Blocked = ""
		}
	}
	return []Action{a}, nil
}

// WriteManaged writes f atomically (temporary file, check, rename, verify
// with rollback) and records its hash.
func (h *Host) WriteManaged(ctx context.Context, f File) error {
	old, existed, err := h.ReadFile(f.Path)
	if err != nil {
		return err
	}
	var oldMode fs.FileMode
	if existed {
		if fi, err := os.Stat(h.Path(f.Path)); err == nil {
			oldMode = fi.Mode().Perm()
		}
	}
	prepare := func(tmp string) error {
		if f.Owner != "" {
			if _, err := h.Cmd(ctx, "chown", f.Owner, h.Path(tmp)); err != nil {
				return err
			}
		}
		if f.Check != nil {
			if err := f.Check(ctx, h, tmp); err != nil {
				return fmt.Errorf("the new %s is invalid (nothing changed): %w", f.Path, err)
			}
		}
		return nil
	}
	if err := h.writeAtomic(f.Path, f.Content, f.Mode, prepare); err != nil {
		return err
	}
	if f.Verify != nil {
		if verr := f.Verify(ctx, h); verr != nil {
			var rerr error
			if existed {
				rerr = h.writeAtomic(f.Path, old, oldMode, nil)
			} else {
				rerr = os.Remove(h.Path(f.Path))
			}
			if rerr != nil {
				return fmt.Errorf("%s rejected (%v), and restoring the old file failed: %w", f.Path, verr, rerr)
			}
			return fmt.Errorf("%s rejected, old file restored: %w", f.Path, verr)
		}
	}
	return h.UpdateState(func(s *State) { s.Files[f.Path] = Hash(f.Content) })
}

// writeAtomic writes a temporary file next to p, lets prepare inspect it
// (given as a host path), then renames it over p.
func (h *Host) writeAtomic(p string, content []byte, mode fs.FileMode, prepare func(tmp string) error) error {
	dir := filepath.Dir(p)
	if err := os.MkdirAll(h.Path(dir), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	t, err := os.CreateTemp(h.Path(dir), "."+filepath.Base(p)+".hearth-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	tmpReal := t.Name()
	done := false
	defer func() {
		if !done {
			os.Remove(tmpReal)
		}
	}()
	if _, err := t.Write(content); err != nil {
		t.Close()
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := t.Chmod(mode.Perm()); err != nil {
		t.Close()
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := t.Sync(); err != nil {
		t.Close()
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := t.Close(); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if prepare != nil {
		if err := prepare(filepath.Join(dir, filepath.Base(tmpReal))); err != nil {
			return err
		}
	}
	if err := os.Rename(tmpReal, h.Path(p)); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	done = true
	if d, err := os.Open(h.Path(dir)); err == nil {
		_ = d.Sync() // the rename is durable once the directory is
		d.Close()
	}
	return nil
}

// ownedBy compares a file's owner with "user:group", resolving names in the
// host's own /etc/passwd and /etc/group.
func (h *Host) ownedBy(p, owner string) (bool, error) {
	user, group, _ := strings.Cut(owner, ":")
	fi, err := os.Stat(h.Path(p))
	if err != nil {
		return false, fmt.Errorf("stat %s: %w", p, err)
	}
	uid, gid, ok := fileOwner(fi)
	if !ok {
		return true, nil
	}
	db, err := h.Accounts()
	if err != nil {
		return false, err
	}
	if u, ok := db.Users[user]; !ok || u.UID != uid {
		return false, nil
	}
	if group != "" {
		if g, ok := db.Groups[group]; !ok || g.GID != gid {
			return false, nil
		}
	}
	return true, nil
}

// Diff is a small line diff for plans: removed lines with "-", added with
// "+", unchanged context collapsed.
func Diff(a, b string) string {
	al := strings.Split(strings.TrimRight(a, "\n"), "\n")
	bl := strings.Split(strings.TrimRight(b, "\n"), "\n")
	// Longest common subsequence; managed files are small.
	n, m := len(al), len(bl)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if al[i] == bl[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out []string
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && al[i] == bl[j]:
			i++
			j++
		case j < m && (i == n || lcs[i][j+1] > lcs[i+1][j]):
			out = append(out, "+"+bl[j])
			j++
		default:
			out = append(out, "-"+al[i])
			i++
		}
	}
	return strings.Join(out, "\n")
}

// sortedKeys returns a map's keys in order, for stable plans.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
