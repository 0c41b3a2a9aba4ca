package turn

import (
	"bytes"
	"sync"

	"github.com/pion/stun/v4"
)

// maxRESTKeys bounds the remembered REST usernames; the table is emptied
// when full (a client whose entry is lost is looked at again on its next
// request).
const maxRESTKeys = 1 << 16

// restKeys remembers which secret signed a REST username. pion's
// AuthHandler returns one key per request without seeing the message, so
// with several secrets (rotation) the right key is found before pion runs:
// observe checks the MESSAGE-INTEGRITY of each request carrying a REST
// username against the key of every secret, and authenticate then returns
// the key that verified.
type restKeys struct {
	mu sync.Mutex
	m  map[string]int // username → index of the secret whose key verified
}

func (r *restKeys) get(username string) (int, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	i, ok := r.m[username]
	return i, ok
}

func (r *restKeys) put(username string, i int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil || len(r.m) >= maxRESTKeys {
		r.m = make(map[string]int)
	}
	r.m[username] = i
}

// observe looks at a STUN message from a client before pion does. It only
// acts when several REST secrets are configured and msg is a request with a
// REST username ("expiry:user") and MESSAGE-INTEGRITY.
func (s *Server) observe(msg []byte) {
	st := s.settings()
	if st.secrets == nil || st.secrets.Len() < 2 || !isSTUN(msg) {
		return
	}
	user, hasMI := stunUsername(msg)
	if !hasMI || bytes.IndexByte(user, ':') < 0 {
		return
	}
	name := string(user)
	keys, err := st.secrets.Keys(name, s.realm, s.now())
	if err != nil {
		return // authenticate reports it
	}
	if i, ok := s.rest.get(name); ok && i < len(keys) {
		return
	}
	m := &stun.Message{Raw: append([]byte(nil), msg...)}
	if err := m.Decode(); err != nil {
		return
	}
	for i, k := range keys {
		if stun.MessageIntegrity(k).Check(m) == nil {
			s.rest.put(name, i)
			return
		}
	}
}

// stunUsername returns msg's USERNAME value and whether
// MESSAGE-INTEGRITY is present. msg must be a STUN message (isSTUN).
func stunUsername(msg []byte) (user []byte, hasMI bool) {
	return stunAttr(msg, stun.AttrUsername), stunAttr(msg, stun.AttrMessageIntegrity) != nil
}

// keyOf returns the long-term key a request by username is checked with,
// or nil: a static user's key, or the REST key of the secret that signed it.
func (s *Server) keyOf(username string) []byte {
	st := s.settings()
	if key, ok := st.users[username]; ok {
		return key
	}
	if st.secrets == nil {
		return nil
	}
	keys, err := st.secrets.Keys(username, s.realm, s.now())
	if err != nil || len(keys) == 0 {
		return nil
	}
	if i, ok := s.rest.get(username); ok && i < len(keys) {
		return keys[i]
	}
	return keys[0]
}

// signSTUN returns msg with MESSAGE-INTEGRITY (key) and FINGERPRINT
// appended, dropping the integrity attributes and FINGERPRINT msg already
// had.
func signSTUN(msg, key []byte) ([]byte, error) {
	m := &stun.Message{Raw: append([]byte(nil), msg...)}
	if err := m.Decode(); err != nil {
		return nil, err
	}
	out := &stun.Message{Type: m.Type, TransactionID: m.TransactionID}
	out.WriteHeader()
	for _, a := range m.Attributes {
		switch a.Type {
		case stun.AttrFingerprint, stun.AttrMessageIntegrity, stun.AttrMessageIntegritySHA256:
			continue
		}
		out.Add(a.Type, a.Value)
	}
	if err := stun.MessageIntegrity(key).AddTo(out); err != nil {
		return nil, err
	}
	if err := stun.Fingerprint.AddTo(out); err != nil {
		return nil, err
	}
	return out.Raw, nil
}
