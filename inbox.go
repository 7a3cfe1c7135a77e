package herald

// InboxFlags are a message's inbox state as bits, the way every Store keeps
// it. The values are stored on disk (the sqlite store's messages.flags):
// never renumber them.
type InboxFlags uint8

const (
	FlagSeen     InboxFlags = 1 << iota // shown to the user
	FlagRead                            // opened; implies seen
	FlagArchived                        // out of the inbox; implies read
)

// Flags returns the flags m sets, the implied ones included: read implies
// seen, archived implies both. 0 for an invalid Mark.
func (m Mark) Flags() InboxFlags {
	switch m {
	case MarkSeen:
		return FlagSeen
	case MarkRead:
		return FlagSeen | FlagRead
	case MarkArchived:
		return FlagSeen | FlagRead | FlagArchived
	}
	return 0
}

// Filter returns the test a message's flags must pass to be listed under
// s: flags&mask == want. ok is false for an unknown status.
func (s InboxStatus) Filter() (mask, want InboxFlags, ok bool) {
	switch s {
	case InboxAll:
		return FlagArchived, 0, true
	case InboxUnread:
		return FlagRead | FlagArchived, 0, true
	case InboxArchived:
		return FlagArchived, FlagArchived, true
	}
	return 0, 0, false
}

// Item returns m as the inbox lists it, with flags f.
func (f InboxFlags) Item(m Message) InboxItem {
	return InboxItem{Message: m, Seen: f&FlagSeen != 0, Read: f&FlagRead != 0, Archived: f&FlagArchived != 0}
}

// Count adds a message with flags f to c: a badge counts the messages that
// are not archived, unread and unseen separately.
func (f InboxFlags) Count(c *InboxCounts) {
	if f&FlagArchived != 0 {
		return
	}
	if f&FlagRead == 0 {
		c.Unread++
	}
	if f&FlagSeen == 0 {
		c.Unseen++
	}
}

// DedupeIDs drops repeated ids in place, keeping the first of each: a
// caller may list one id twice, or two messages may share an ID, and Mark
// reports each changed id once.
func DedupeIDs(ids []string) []string {
	if len(ids) < 2 {
		return ids
	}
	seen := make(map[string]bool, len(ids))
	out := ids[:0]
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}
