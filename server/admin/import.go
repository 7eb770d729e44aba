package admin

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/merveilles/hearth/server/store"
)

// Entry is one account to import.
type Entry struct {
	Line      int
	Localpart string
	Password  string
}

// LineError is one unusable line of an import file.
type LineError struct {
	Line int
	Msg  string
}

// BadLinesError lists every unusable line; nothing is imported when a file
// has any, so a typo never leaves an import half done.
type BadLinesError struct {
	Lines []LineError
}

func (e *BadLinesError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d bad line(s), nothing imported:", len(e.Lines))
	const show = 50
	for i, l := range e.Lines {
		if i == show {
			fmt.Fprintf(&b, "\n  … and %d more", len(e.Lines)-show)
			break
		}
		fmt.Fprintf(&b, "\n  line %d: %s", l.Line, l.Msg)
	}
	return b.String()
}

// ParseImport reads "localpart password" lines. The password is the rest of
// the line after the first run of spaces or tabs, with surrounding
// whitespace removed. Blank lines and lines starting with # are skipped.
func ParseImport(r io.Reader, domain string) ([]Entry, error) {
	var out []Entry
	var bad []LineError
	seen := map[string]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, pw := line, ""
		if i := strings.IndexAny(line, " \t"); i >= 0 {
			name, pw = line[:i], strings.TrimSpace(line[i+1:])
		}
		if pw == "" {
			bad = append(bad, LineError{n, "expected \"localpart password\", found no password"})
			continue
		}
		lp, err := ParseUser(name, domain)
		if err != nil {
			bad = append(bad, LineError{n, err.Error()})
			continue
		}
		if first, dup := seen[lp]; dup {
			bad = append(bad, LineError{n, fmt.Sprintf("%q is already on line %d", lp, first)})
			continue
		}
		seen[lp] = n
		out = append(out, Entry{Line: n, Localpart: lp, Password: pw})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("line %d: %w", n+1, err)
	}
	if len(bad) > 0 {
		return nil, &BadLinesError{Lines: bad}
	}
	return out, nil
}

// ImportOptions tune Import.
type ImportOptions struct {
	Role store.Role
	// Replace overwrites existing accounts; otherwise they are skipped.
	Replace bool
	// Workers derive credentials in parallel; default runtime.NumCPU().
	Workers int
	// BatchSize accounts are written per transaction; default 500.
	BatchSize int
	// Progress receives status lines; nil for none. With TTY set the line
	// is redrawn in place, otherwise a new line is printed every Interval.
	Progress io.Writer
	TTY      bool
	Interval time.Duration
}

// ImportResult counts what Import did.
type ImportResult struct {
	Created, Replaced, Skipped int
	Elapsed                    time.Duration
}

// Import creates accounts from entries. PBKDF2 makes this CPU-bound, so the
// keys are derived on every core while finished accounts are written in
// batches. On error, what was written stays and the error says how much:
// running the same import again skips those and does the rest.
func Import(ctx context.Context, ops Ops, entries []Entry, opt ImportOptions) (ImportResult, error) {
	start := time.Now()
	var res ImportResult
	if opt.Role == "" {
		opt.Role = store.RoleMember
	}
	if opt.Workers <= 0 {
		opt.Workers = runtime.NumCPU()
	}
	if opt.BatchSize <= 0 {
		opt.BatchSize = 500
	}
	if opt.Interval <= 0 {
		opt.Interval = 2 * time.Second
		if opt.TTY {
			opt.Interval = 200 * time.Millisecond
		}
	}
	info, err := ops.Info(ctx)
	if err != nil {
		return res, err
	}
	users, err := ops.ListUsers(ctx)
	if err != nil {
		return res, err
	}
	existing := make(map[string]bool, len(users))
	for _, u := range users {
		existing[u.Localpart] = true
	}
	todo := make([]Entry, 0, len(entries))
	for _, e := range entries {
		if existing[e.Localpart] && !opt.Replace {
			res.Skipped++
			continue
		}
		todo = append(todo, e)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		acct store.Account
		err  error
	}
	jobs := make(chan Entry)
	results := make(chan result, opt.Workers*2)
	var wg sync.WaitGroup
	for range opt.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for e := range jobs {
				a, err := NewAccount(e.Localpart, e.Password, opt.Role, info.ScramIterations)
				if err != nil {
					err = fmt.Errorf("line %d (%s): %w", e.Line, e.Localpart, err)
				}
				select {
				case results <- result{a, err}:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	go func() {
		defer close(jobs)
		for _, e := range todo {
			select {
			case jobs <- e:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() { wg.Wait(); close(results) }()

	p := progress{w: opt.Progress, tty: opt.TTY, every: opt.Interval, total: len(todo), start: start}
	batch := make([]store.Account, 0, opt.BatchSize)
	written := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := ops.PutUsers(ctx, batch); err != nil {
			return err
		}
		for _, a := range batch {
			if existing[a.Localpart] {
				res.Replaced++
			} else {
				res.Created++
			}
		}
		written += len(batch)
		batch = batch[:0]
		return nil
	}
	fail := func(err error) (ImportResult, error) {
		cancel()
		for range results {
		}
		p.finish()
		res.Elapsed = time.Since(start)
		return res, fmt.Errorf("import stopped after writing %d of %d accounts (run it again to do the rest; existing accounts are skipped): %w", written, len(todo), err)
	}
	derived := 0
	for r := range results {
		if r.err != nil {
			return fail(r.err)
		}
		derived++
		batch = append(batch, r.acct)
		if len(batch) == opt.BatchSize {
			if err := flush(); err != nil {
				return fail(err)
			}
		}
		p.update(derived, false)
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	if err := flush(); err != nil {
		return fail(err)
	}
	p.update(derived, true)
	p.finish()
	res.Elapsed = time.Since(start)
	return res, nil
}

// progress prints "count/total, rate, ETA" lines.
type progress struct {
	w     io.Writer
	tty   bool
	every time.Duration
	total int
	start time.Time
	last  time.Time
	drawn bool
}

func (p *progress) update(done int, final bool) {
	if p.w == nil {
		return
	}
	now := time.Now()
	if !final && now.Sub(p.last) < p.every {
		return
	}
	p.last = now
	el := now.Sub(p.start).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(done) / el
	}
	eta := "?"
	if done >= p.total {
		eta = "0s"
	} else if rate > 0 {
		eta = time.Duration(float64(p.total-done) / rate * float64(time.Second)).Round(time.Second).String()
	}
	line := fmt.Sprintf("imported %d/%d accounts, %.0f accounts/s, ETA %s", done, p.total, rate, eta)
	if p.tty {
		fmt.Fprintf(p.w, "\r%s\x1b[K", line)
		p.drawn = true
	} else {
		fmt.Fprintln(p.w, line)
	}
}

func (p *progress) finish() {
	if p.w != nil && p.tty && p.drawn {
		fmt.Fprintln(p.w)
	}
}
