package installer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/merveilles/hearth/server/config"
	"github.com/merveilles/hearth/templates"
)

// ConfigPath is the configuration "hearth run" reads.
const ConfigPath = "/etc/hearth/hearth.yaml"

// ConfigFile is the step that writes hearth.yaml from the answers.
type ConfigFile struct {
	Answers *Answers
}

// Name implements Step.
func (ConfigFile) Name() string { return "configuration" }

// Render is hearth.yaml for these answers, from the commented template.
func (c ConfigFile) Render() ([]byte, error) {
	p := templates.ConfigParams{
		Domain:      c.Answers.Domain,
		DataDir:     DataDir,
		CertFile:    CertFile,
		KeyFile:     KeyFile,
		AdminGroup:  AdminGroup,
		ACMENames:   certNames(c.Answers),
		ACMEEmail:   c.Answers.ACMEEmail,
		RoomsDomain: c.Answers.RoomsDomain,
		// Uploads and invites have no daemon setting yet; their answers
		// are kept in setup.yaml.
		ArchiveRetention:     formatDays(c.Answers.Retention.PersonalArchive.D()),
		OfflineRetention:     formatDays(c.Answers.Retention.OfflineMessages.D()),
		RoomArchiveRetention: formatDays(c.Answers.Retention.RoomArchive.D()),
	}
	if c.Answers.DataDevice != "" {
		p.DataVolume = "required"
	}
	return templates.Config(p)
}

// Plan implements Step.
func (c ConfigFile) Plan(ctx context.Context, h *Host) ([]Action, error) {
	b, err := c.Render()
	if err != nil {
		return nil, err
	}
	return h.FileActions(File{
		Path:    ConfigPath,
		Content: b,
		Mode:    0o640,
		Owner:   "root:hearth",
		// The daemon must be able to start from what is written.
		Check: func(ctx context.Context, h *Host, candidate string) error {
			_, err := config.Load(h.Path(candidate))
			return err
		},
	})
}

// Steps are every host change setup makes, in order.
// invoker is the sysadmin running setup, who must not be locked out.
func Steps(a *Answers, invoker string) []Step {
	return []Step{
		// The volume first: hearth.yaml then says data_volume: required
		// only once the volume is mounted, and certificates land on it.
		Storage{Device: a.DataDevice, Format: a.FormatDevice != "" && a.FormatDevice == a.DataDevice, Service: "hearth.service"},
		ConfigFile{Answers: a},
		Accounts{Sysadmins: a.Sysadmins, ChatAdmins: a.ChatAdmins, Invoker: invoker},
		UFW{Federation: a.FederationAllowed},
		Certs{CertFile: CertFile, KeyFile: KeyFile, Names: certNames(a), Owner: "hearth:hearth"},
		nginxStep(a),
		Service{Unit: "hearth.service", Config: ConfigPath, Timeout: 90 * time.Second},
	}
}

// Options are what "hearth setup" and "hearth plan" were asked to do.
type Options struct {
	Host *Host
	// Prompter asks the wizard's questions and the final confirmation; nil
	// means there is no terminal.
	Prompter Prompter
	// AnswersFile replaces the wizard (unattended run).
	AnswersFile string
	// Yes applies without asking.
	Yes bool
	// PlanOnly prints the plan and changes nothing ("hearth plan").
	PlanOnly bool
	// Invoker is the sysadmin running setup (SUDO_USER).
	Invoker string
	Out     io.Writer
	// Steps builds the steps from the answers; nil uses Steps.
	Steps func(a *Answers, invoker string) []Step
}

// Setup is "hearth setup" and "hearth plan": answers (wizard, --answers
// or the saved ones), the whole plan, a confirmation, then apply. changes
// reports whether the plan had any.
func Setup(ctx context.Context, o Options) (changes bool, err error) {
	h := o.Host
	saved, err := h.SavedAnswers()
	if err != nil {
		return false, err
	}
	var a *Answers
	switch {
	case o.AnswersFile != "":
		if a, err = LoadAnswersFile(o.AnswersFile); err != nil {
			return false, err
		}
	case o.PlanOnly:
		if saved == nil {
			return false, fmt.Errorf("no saved answers in %s: run \"sudo hearth setup\" first, or give --answers FILE", AnswersPath)
		}
		a = saved
	case o.Prompter == nil:
		return false, ErrNoTerminal
	default:
		if a, err = Ask(ctx, o.Prompter, h, saved, o.Invoker); err != nil {
			return false, err
		}
	}
	build := o.Steps
	if build == nil {
		build = Steps
	}
	steps := build(a, o.Invoker)
	plan, err := MakePlan(ctx, h, steps)
	if err != nil {
		return false, err
	}
	if !o.PlanOnly && (saved == nil || !sameAnswers(saved, a)) {
		// The answers become the next run's defaults even if the plan is
		// not applied now.
		if err := h.SaveAnswers(a); err != nil {
			return false, err
		}
	}
	plan.Write(o.Out)
	if plan.Empty() {
		fmt.Fprintln(o.Out, "\nNothing to change: the host is as setup wants it.")
		return false, nil
	}
	if b := plan.Blocked(); len(b) > 0 {
		return true, fmt.Errorf("%w; nothing was changed", ErrBlocked)
	}
	if o.PlanOnly {
		return true, nil
	}
	if !o.Yes {
		if o.Prompter == nil {
			return true, errors.New("not applying without confirmation: add --yes to apply the plan above unattended")
		}
		ok, err := o.Prompter.Confirm("Apply these changes?", true)
		if err != nil {
			return true, err
		}
		if !ok {
			fmt.Fprintln(o.Out, "Nothing was changed.")
			return true, nil
		}
	}
	start := time.Now()
	if err := Apply(ctx, h, steps); err != nil {
		return true, err
	}
	fmt.Fprintf(o.Out, "\nDone in %s.\n", time.Since(start).Round(time.Millisecond))
	if st, err := Status(ctx, h, "hearth.service"); err == nil {
		fmt.Fprintln(o.Out, st)
	}
	return true, nil
}

func sameAnswers(a, b *Answers) bool {
	x, err1 := yamlBytes(a)
	y, err2 := yamlBytes(b)
	return err1 == nil && err2 == nil && string(x) == string(y)
}
