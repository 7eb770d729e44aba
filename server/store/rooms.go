package store

import (
	"context"
	"strings"
	"time"
)

// Affiliation is a long-lived relation between a bare JID and a room
// (XEP-0045 section 5.2).
type Affiliation string

// Affiliations, strongest first.
const (
	AffOwner   Affiliation = "owner"
	AffAdmin   Affiliation = "admin"
	AffMember  Affiliation = "member"
	AffNone    Affiliation = "none"
	AffOutcast Affiliation = "outcast"
)

// Valid reports whether a is a known affiliation.
func (a Affiliation) Valid() bool {
	switch a {
	case AffOwner, AffAdmin, AffMember, AffNone, AffOutcast:
		return true
	}
	return false
}

// Room is a persistent group chat at rooms.DOMAIN (XEP-0045). The zero
// values are the safe ones: encrypted, not anonymous, no federation.
type Room struct {
	// Name is the room's localpart, lower case (the JID's node).
	Name        string    `json:"name"`
	Title       string    `json:"title,omitempty"`
	Description string    `json:"description,omitempty"`
	Created     time.Time `json:"created"`

	Subject     string    `json:"subject,omitempty"`
	SubjectNick string    `json:"subject_nick,omitempty"`
	SubjectTime time.Time `json:"subject_time,omitempty"`

	// Plaintext rooms are exempt from the E2EE policy; only chat admins
	// (server role admin) set it (DESIGN.md decision 5).
	Plaintext bool `json:"plaintext,omitempty"`
	// Open rooms are not members-only; SemiAnonymous hides real JIDs from
	// non-moderators. Both are refused for encrypted rooms: OMEMO needs
	// every occupant's real JID.
	Open          bool `json:"open,omitempty"`
	SemiAnonymous bool `json:"semi_anonymous,omitempty"`
	// Public rooms are listed in disco#items to those who may see them.
	Public    bool `json:"public,omitempty"`
	Moderated bool `json:"moderated,omitempty"`
	// MembersInvite lets members (not only admins and owners) invite.
	MembersInvite bool `json:"members_invite,omitempty"`
	// OccupantsSubject lets participants change the subject.
	OccupantsSubject bool `json:"occupants_subject,omitempty"`
	// MaxHistory caps the messages sent on join (0 means the default).
	MaxHistory int `json:"max_history,omitempty"`

	// Retention overrides the server's room archive retention; chat admins
	// set it within server bounds. Zero means the server default.
	Retention time.Duration `json:"retention,omitempty"`
	// Federation is "off", the only value for now (DESIGN.md decision 6).
	Federation string `json:"federation,omitempty"`

	// Affiliations maps bare JIDs to owner, admin, member or outcast.
	Affiliations map[string]Affiliation `json:"affiliations,omitempty"`
	// Nicks maps bare JIDs to their reserved nickname (members' nicks).
	Nicks map[string]string `json:"nicks,omitempty"`
	// VCard is the room's vcard-temp (room avatar), serialized.
	VCard []byte `json:"vcard,omitempty"`
	// Secret keys the room's occupant-ids (XEP-0421): stable for a real
	// JID within the room, unlinkable across rooms.
	Secret []byte `json:"secret,omitempty"`
}

// Affiliation returns bare's affiliation, AffNone if it has none.
func (r *Room) Affiliation(bare string) Affiliation {
	if a, ok := r.Affiliations[bare]; ok {
		return a
	}
	return AffNone
}

// SetAffiliation records bare's affiliation; AffNone removes it from the
// lists.
func (r *Room) SetAffiliation(bare string, a Affiliation) {
	if a == AffNone {
		delete(r.Affiliations, bare)
		return
	}
	if r.Affiliations == nil {
		r.Affiliations = make(map[string]Affiliation)
	}
	r.Affiliations[bare] = a
}

// NickReservedByOther reports whether someone other than bare has
// registered nick (compared without case) in the room.
func (r *Room) NickReservedByOther(nick, bare string) bool {
	for owner, reserved := range r.Nicks {
		if owner != bare && strings.EqualFold(reserved, nick) {
			return true
		}
	}
	return false
}

// Rooms stores persistent rooms.
type Rooms interface {
	// CreateRoom stores a new room; ErrExists if the name is taken.
	CreateRoom(ctx context.Context, r Room) error
	// GetRoom returns ErrNotFound for an unknown room.
	GetRoom(ctx context.Context, name string) (Room, error)
	// UpdateRoom reads the room, calls fn and stores the result in one
	// transaction; an error from fn stores nothing.
	UpdateRoom(ctx context.Context, name string, fn func(*Room) error) error
	// DeleteRoom removes the room and its archive.
	DeleteRoom(ctx context.Context, name string) error
	ListRooms(ctx context.Context) ([]Room, error)
}

// RoomArchive stores each room's message archive (XEP-0313 on the room
// JID). Records use the same ID scheme as personal archives; With is the
// sender's occupant JID (room@rooms.DOMAIN/nick).
type RoomArchive interface {
	// AppendRoomArchive durably stores records; an ID already present is
	// refused with ErrExists; ErrNotFound if the room does not exist.
	AppendRoomArchive(ctx context.Context, room string, recs ...ArchiveRecord) error
	QueryRoomArchive(ctx context.Context, room string, q ArchiveQuery) (ArchivePage, error)
	// ReplaceRoomArchive rewrites one record's stanza (a moderator's
	// retraction leaves a tombstone, XEP-0425); ErrNotFound if absent.
	ReplaceRoomArchive(ctx context.Context, room string, id uint64, stanza []byte) error
	// PruneRoomArchive removes, in every room, the records older than the
	// time cutoff returns for that room.
	PruneRoomArchive(ctx context.Context, cutoff func(Room) time.Time, dryRun bool, progress PruneProgress) (PruneStats, error)
}

// AuditEntry records a change an administrator made, such as a room
// switched between encrypted and plaintext.
type AuditEntry struct {
	Time   time.Time `json:"time"`
	Actor  string    `json:"actor"`  // bare JID, or "cli:USER" for the admin socket
	Action string    `json:"action"` // e.g. "room.mode"
	Target string    `json:"target"` // e.g. the room JID
	Old    string    `json:"old,omitempty"`
	New    string    `json:"new,omitempty"`
}

// Audit is an append-only log of administrative changes.
type Audit interface {
	AppendAudit(ctx context.Context, e AuditEntry) error
	// ListAudit returns entries oldest first, at most limit (0: all).
	ListAudit(ctx context.Context, limit int) ([]AuditEntry, error)
}
