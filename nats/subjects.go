package nats

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/herald-gw/herald"
)

// DefaultPrefix is the subject prefix when Options.Prefix is empty.
const DefaultPrefix = "herald"

// subjects names the NATS subjects of one cluster, all under its prefix:
//
//	<prefix>.u.<token>   one user's messages, and the controls about that
//	                     user (ControlPush, ControlDisconnectUser)
//	<prefix>.b           broadcasts
//	<prefix>.c           controls about one connection (ControlPostToConn,
//	                     ControlDisconnectConn, ControlAckConn) and the
//	                     nodes' connection counts (ControlCounts)
//
// Controls about a user travel on the user's subject so that they reach
// exactly the nodes that receive the user's messages: the nodes watching
// the user (herald.BrokerInterest). A connection is on one node, which
// only the cluster's registry knows, so its controls go to every node on
// <prefix>.c for now.
type subjects struct {
	prefix string
}

// userToken encodes a user id as one subject token. NATS splits subjects
// at '.', gives '*' and '>' tokens wildcard meaning, and ends them at
// white space, while a user id may hold any of these (and any other
// UTF-8). Unpadded base64url uses only A-Z a-z 0-9 '-' '_', none of which
// NATS treats specially, is injective, and keeps a 256-byte user id
// (herald.MaxUserIDLen) within 342 bytes, far below the server's 4 KiB
// limit on a protocol line.
func userToken(u herald.UserID) string { return base64.RawURLEncoding.EncodeToString([]byte(u)) }

// user is the subject of u's messages and user controls.
func (s subjects) user(u herald.UserID) string { return s.prefix + ".u." + userToken(u) }

// broadcast is the subject of broadcasts.
func (s subjects) broadcast() string { return s.prefix + ".b" }

// conns is the subject of the controls every node receives: those about
// one connection, and the nodes' counts.
func (s subjects) conns() string { return s.prefix + ".c" }

// control is the subject c travels on.
func (s subjects) control(c herald.Control) string {
	if c.Kind.ByUser() {
		return s.user(c.User)
	}
	return s.conns()
}

// interest lists what every handler's subscription listens on: what
// reaches every node. The user subjects come and go with the users the
// node watches (see interest.go).
func (s subjects) interest() []string {
	return []string{s.broadcast(), s.conns()}
}

// checkPrefix reports why p cannot prefix subjects: it must be one or more
// tokens separated by single dots, without white space or wildcards.
func checkPrefix(p string) error {
	if p == "" {
		return errors.New("subject prefix is empty")
	}
	for tok := range strings.SplitSeq(p, ".") {
		if tok == "" {
			return fmt.Errorf("subject prefix %q has an empty token", p)
		}
		if strings.ContainsAny(tok, "*> \t\r\n\f\v") {
			return fmt.Errorf("subject prefix %q has a wildcard or white space", p)
		}
	}
	return nil
}
