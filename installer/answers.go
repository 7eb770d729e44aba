package installer

import (
	"bytes"
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/merveilles/hearth/server/config"
)

// AnswersPath is where the wizard keeps its answers: they are the defaults
// of the next run, and the file --answers expects has the same shape.
const AnswersPath = "/etc/hearth/setup.yaml"

// Answers are everything setup needs to know. The file holds the OIDC
// client secret, so it is written with mode 0600.
type Answers struct {
	// Domain is the chat domain (accounts are user@Domain).
	Domain      string `yaml:"domain"`
	RoomsDomain string `yaml:"rooms_domain"` // default rooms.DOMAIN
	ShareDomain string `yaml:"share_domain"` // default share.DOMAIN
	// ACMEEmail is the contact the certificate authority writes to.
	ACMEEmail string `yaml:"acme_email"`
	// DataDevice is the block device for /var/lib/hearth, or empty for
	// none (data on the root disk).
	DataDevice string `yaml:"data_device"`
	// FormatDevice must repeat DataDevice to allow formatting it, and only
	// an empty device (no filesystem, no partition table) is ever formatted.
	FormatDevice string `yaml:"format_device,omitempty"`
	// Sysadmins are existing Unix users given sudo and SSH access; they are
	// the only ones SSH lets in afterwards.
	Sysadmins []string `yaml:"sysadmins"`
	// ChatAdmins are existing Unix users who may run "hearth admin".
	ChatAdmins []string `yaml:"chat_admins"`
	// FederationAllowed lets chat admins open rooms to other servers; when
	// false, port 5269 stays closed and s2s is off.
	FederationAllowed bool      `yaml:"federation_allowed"`
	Retention         Retention `yaml:"retention"`
	// UploadLimitMB is the largest file upload.
	UploadLimitMB int `yaml:"upload_limit_mb"`
	// OIDC is the Keycloak client; an empty issuer means invites only.
	OIDC OIDC `yaml:"oidc"`
}

// Retention are how long things are kept; all finite.
type Retention struct {
	PersonalArchive config.Duration `yaml:"personal_archive"`
	RoomArchive     config.Duration `yaml:"room_archive"`
	Uploads         config.Duration `yaml:"uploads"`
	OfflineMessages config.Duration `yaml:"offline_messages"`
	Invites         config.Duration `yaml:"invites"`
}

// OIDC is the Keycloak client hearth logs members in with.
type OIDC struct {
	Issuer       string `yaml:"issuer"`
	ClientID     string `yaml:"client_id"`
	ClientSecret string `yaml:"client_secret"`
}

// DefaultAnswers are the wizard's defaults on a first run.
func DefaultAnswers() *Answers {
	day := 24 * time.Hour
	return &Answers{
		Retention: Retention{
			PersonalArchive: config.Duration(365 * day),
			RoomArchive:     config.Duration(365 * day),
			Uploads:         config.Duration(90 * day),
			OfflineMessages: config.Duration(30 * day),
			Invites:         config.Duration(14 * day),
		},
		UploadLimitMB: 100,
	}
}

// withDefaults fills the derived names.
func (a *Answers) withDefaults() {
	if a.RoomsDomain == "" && a.Domain != "" {
		a.RoomsDomain = "rooms." + a.Domain
	}
	if a.ShareDomain == "" && a.Domain != "" {
		a.ShareDomain = "share." + a.Domain
	}
	if a.DataDevice == "none" {
		a.DataDevice = ""
	}
}

// domainRE is compiled on first use: its label repetition makes ~90 KiB of
// program the running chat server, which links the installer, should not hold.
var domainRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`)
})

// ValidateDomain accepts a lower-case DNS name with at least two labels.
func ValidateDomain(s string) error {
	if len(s) > 253 || !domainRE().MatchString(s) {
		return fmt.Errorf("%q is not a domain name (lower case, like chat.example.org)", s)
	}
	return nil
}

// ValidateEmail accepts a bare address.
func ValidateEmail(s string) error {
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || !strings.Contains(s[strings.LastIndex(s, "@")+1:], ".") {
		return fmt.Errorf("%q is not an email address", s)
	}
	return nil
}

// ValidateIssuer accepts an https URL (a Keycloak realm URL).
func ValidateIssuer(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%q is not an https issuer URL (like https://id.example.org/realms/merveilles)", s)
	}
	return nil
}

// ValidateRetention accepts a duration of at least a day.
func ValidateRetention(s string) error {
	d, err := config.ParseDuration(s)
	if err != nil {
		return err
	}
	if d < 24*time.Hour {
		return fmt.Errorf("%s is less than a day (use e.g. 30d)", s)
	}
	return nil
}

// MaxRoomArchive is retention.room_archive_max in the hearth.yaml setup
// writes: the daemon refuses a default room retention beyond it.
const MaxRoomArchive = 365 * 24 * time.Hour

// ValidateRoomRetention is ValidateRetention within MaxRoomArchive.
func ValidateRoomRetention(s string) error {
	if err := ValidateRetention(s); err != nil {
		return err
	}
	if d, _ := config.ParseDuration(s); d > MaxRoomArchive {
		return fmt.Errorf("%s is more than %dd, the longest a room may keep its archive", s, MaxRoomArchive/(24*time.Hour))
	}
	return nil
}

// Validate checks every answer and reports all problems at once.
func (a *Answers) Validate() error {
	a.withDefaults()
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	for _, d := range []struct{ key, v string }{{"domain", a.Domain}, {"rooms_domain", a.RoomsDomain}, {"share_domain", a.ShareDomain}} {
		if err := ValidateDomain(d.v); err != nil {
			bad("%s: %v", d.key, err)
		}
	}
	if a.RoomsDomain == a.Domain || a.ShareDomain == a.Domain || (a.RoomsDomain == a.ShareDomain && a.RoomsDomain != "") {
		bad("domain, rooms_domain and share_domain must differ")
	}
	if err := ValidateEmail(a.ACMEEmail); err != nil {
		bad("acme_email: %v", err)
	}
	if a.DataDevice != "" && !strings.HasPrefix(a.DataDevice, "/dev/") {
		bad("data_device: %q is not a /dev path (or leave it empty for no separate volume)", a.DataDevice)
	}
	if a.FormatDevice != "" && a.FormatDevice != a.DataDevice {
		bad("format_device: %q must repeat data_device (%q) to allow formatting it", a.FormatDevice, a.DataDevice)
	}
	if len(a.Sysadmins) == 0 {
		bad("sysadmins: name at least one existing Unix user (SSH will let only sysadmins in)")
	}
	for _, r := range []struct {
		key string
		v   config.Duration
	}{{"personal_archive", a.Retention.PersonalArchive}, {"room_archive", a.Retention.RoomArchive}, {"uploads", a.Retention.Uploads}, {"offline_messages", a.Retention.OfflineMessages}, {"invites", a.Retention.Invites}} {
		if r.v.D() < 24*time.Hour {
			bad("retention.%s: must be at least 1d (everything is kept for a finite time)", r.key)
		}
	}
	if a.Retention.RoomArchive.D() > MaxRoomArchive {
		bad("retention.room_archive: must be at most %dd (retention.room_archive_max in hearth.yaml)", MaxRoomArchive/(24*time.Hour))
	}
	if a.UploadLimitMB < 1 || a.UploadLimitMB > 10240 {
		bad("upload_limit_mb: %d must be between 1 and 10240", a.UploadLimitMB)
	}
	if a.OIDC.Issuer != "" {
		if err := ValidateIssuer(a.OIDC.Issuer); err != nil {
			bad("oidc.issuer: %v", err)
		}
		if a.OIDC.ClientID == "" || a.OIDC.ClientSecret == "" {
			bad("oidc: client_id and client_secret are required with an issuer")
		}
	} else if a.OIDC.ClientID != "" || a.OIDC.ClientSecret != "" {
		bad("oidc: client_id/client_secret given without an issuer (leave all empty for invites only)")
	}
	return errors.Join(errs...)
}

// ParseAnswers reads an answers file strictly: an unknown key is an error,
// so a typo does not silently become a default.
func ParseAnswers(b []byte) (*Answers, error) {
	a := DefaultAnswers()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(a); err != nil {
		return nil, err
	}
	if err := a.Validate(); err != nil {
		return nil, err
	}
	return a, nil
}

// LoadAnswersFile reads --answers FILE (a path on this machine, not under
// the host root).
func LoadAnswersFile(path string) (*Answers, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("answers: %w", err)
	}
	a, err := ParseAnswers(b)
	if err != nil {
		return nil, fmt.Errorf("answers %s: %w", path, err)
	}
	return a, nil
}

// SavedAnswers reads the previous run's answers from the host, or nil.
func (h *Host) SavedAnswers() (*Answers, error) {
	b, ok, err := h.ReadFile(AnswersPath)
	if err != nil || !ok {
		return nil, err
	}
	a, err := ParseAnswers(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (fix it, or move it away to start afresh)", AnswersPath, err)
	}
	return a, nil
}

// SaveAnswers writes the answers to the host, readable by root only.
// The permission to format is not kept: it was given for the device as it
// was then, and a later empty device there must be confirmed again.
func (h *Host) SaveAnswers(a *Answers) error {
	keep := *a
	keep.FormatDevice = ""
	b, err := yaml.Marshal(&keep)
	if err != nil {
		return fmt.Errorf("answers: %w", err)
	}
	head := "# hearth setup answers: the defaults of the next \"sudo hearth setup\", and\n" +
		"# usable unattended with \"hearth setup --answers FILE --yes\". Holds the OIDC\n" +
		"# client secret: keep it mode 0600.\n"
	return h.writeAtomic(AnswersPath, append([]byte(head), b...), 0o600, nil)
}

func yamlBytes(a *Answers) ([]byte, error) { return yaml.Marshal(a) }
