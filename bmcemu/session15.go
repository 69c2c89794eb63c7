package bmcemu

import (
	"context"
	"encoding/binary"

	"github.com/bougou/go-ipmi/pkg/bmc"
	"github.com/bougou/go-ipmi/pkg/handlers"
	"github.com/bougou/go-ipmi/pkg/types"
)

// Activate Session completion codes (IPMI v2.0 table 22-21).
const (
	ccV15NoSessionSlot     = 0x81
	ccV15InvalidSessionID  = 0x85
	ccV15PrivilegeTooHigh  = 0x86
	ccRequestDataTruncated = 0xc6
	ccParamOutOfRange      = 0xc9
)

// activateSession15 answers IPMI 1.5 Activate Session (App 0x3A). It
// replaces go-ipmi's handler, which allows one session per user and two at
// operator privilege or above: Ironic-style tooling runs several
// `ipmitool -I lan` calls for the one account at once. The session table
// itself stays bounded by go-ipmi's store (spec minimum of 4).
func (s *Server) activateSession15(_ context.Context, hctx *handlers.HandlerContext, req []byte) ([]byte, types.CompletionCode, error) {
	if len(req) < 22 {
		return nil, ccRequestDataTruncated, nil
	}
	if hctx == nil || hctx.V15Session == nil || hctx.V15Session.State != bmc.V15SessionStatePending {
		return nil, ccV15InvalidSessionID, nil
	}
	sess := hctx.V15Session
	if bmc.V15AuthType(req[0]&0x0f) != sess.AuthType {
		return nil, ccV15InvalidSessionID, nil
	}
	requested := bmc.PrivilegeLevel(req[1] & 0x0f)
	if requested == 0 || requested > bmc.PrivilegeLevelOEM {
		return nil, ccParamOutOfRange, nil
	}
	var challenge [16]byte
	copy(challenge[:], req[2:18])
	if challenge != sess.Challenge {
		return nil, ccV15InvalidSessionID, nil
	}
	if !s.mayActivate15(sess, requested) {
		return nil, ccV15PrivilegeTooHigh, nil
	}
	outbound := binary.LittleEndian.Uint32(req[18:22])
	if outbound == 0 {
		return nil, ccV15InvalidSessionID, nil
	}
	inbound, err := bmc.GenerateInboundSeq()
	if err != nil {
		return nil, ccUnspecified, nil
	}
	permanent, err := bmc.GenerateInboundSeq()
	if err != nil {
		return nil, ccUnspecified, nil
	}
	if err := s.bmc.V15Sessions.Activate(sess, permanent, inbound, outbound, requested); err != nil {
		return nil, ccV15NoSessionSlot, nil
	}
	ch, _ := s.bmc.Channels.Get(sess.Channel)
	resp := make([]byte, 10)
	resp[0] = uint8(handlers.V15ResponseAuthType(ch, sess))
	binary.LittleEndian.PutUint32(resp[1:5], sess.SessionID)
	binary.LittleEndian.PutUint32(resp[5:9], inbound)
	resp[9] = uint8(requested)
	return resp, ccOK, nil
}

// mayActivate15 checks the requested privilege against the channel and the
// user's access on it.
func (s *Server) mayActivate15(sess *bmc.V15Session, requested bmc.PrivilegeLevel) bool {
	if sess.User == nil || !sess.User.Enabled {
		return false
	}
	ch, err := s.bmc.Channels.Get(sess.Channel)
	if err != nil || ch.AccessMode == bmc.ChannelAccessDisabled || requested > ch.MaxPrivilege {
		return false
	}
	access, ok := sess.User.ChannelAccess[sess.Channel]
	if !ok || !access.Enabled {
		return false
	}
	if access.CallbackOnly && requested != bmc.PrivilegeLevelCallback {
		return false
	}
	return access.MaxPrivilege != bmc.PrivilegeLevelNoAccess && requested <= access.MaxPrivilege
}
