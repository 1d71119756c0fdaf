package wire

import (
	"errors"
	"fmt"
)

// ErrorCode is an rpe protocol error code. It travels in Error frames and as
// the QUIC application error code when a connection is closed.
type ErrorCode uint16

// Error codes. The values are part of the wire format.
const (
	CodeNone           ErrorCode = 0  // orderly close, no error
	CodeProtocol       ErrorCode = 1  // malformed frame or message, or a message in the wrong place
	CodeFrameTooLarge  ErrorCode = 2  // a frame longer than its type allows
	CodeUnknownMessage ErrorCode = 3  // a frame type this version does not know
	CodeBadIndex       ErrorCode = 4  // a chunk index outside the release
	CodeNotFound       ErrorCode = 5  // the release or chunk is not held here
	CodeBusy           ErrorCode = 6  // the peer is at its upload limit; ask again later or elsewhere
	CodeBadNodeID      ErrorCode = 7  // the node ID does not match the certificate key
	CodeVersion        ErrorCode = 8  // unsupported protocol version
	CodeInternal       ErrorCode = 9  // the peer failed to answer for a reason of its own
	CodeCancelled      ErrorCode = 10 // the requester gave up on a request (stream cancel code)
	CodeNoProof        ErrorCode = 11 // the peer did not prove it knows the private swarm's secret
)

// Sentinel errors. A code received from a peer, or detected locally, matches
// the sentinel of the same meaning with errors.Is.
var (
	ErrClosed         = errors.New("wire: connection closed")
	ErrProtocol       = errors.New("wire: protocol violation")
	ErrFrameTooLarge  = errors.New("wire: frame too large")
	ErrUnknownMessage = errors.New("wire: unknown message type")
	ErrBadIndex       = errors.New("wire: chunk index out of range")
	ErrNotFound       = errors.New("wire: not found")
	ErrBusy           = errors.New("wire: peer busy")
	ErrBadNodeID      = errors.New("wire: node ID does not match its key")
	ErrVersion        = errors.New("wire: unsupported protocol version")
	ErrInternal       = errors.New("wire: internal error")
	ErrCancelled      = errors.New("wire: request cancelled")
	ErrNoProof        = errors.New("wire: no proof of the swarm secret")
)

var codeNames = [...]string{
	CodeNone:           "none",
	CodeProtocol:       "protocol",
	CodeFrameTooLarge:  "frame too large",
	CodeUnknownMessage: "unknown message",
	CodeBadIndex:       "bad index",
	CodeNotFound:       "not found",
	CodeBusy:           "busy",
	CodeBadNodeID:      "bad node ID",
	CodeVersion:        "version",
	CodeInternal:       "internal",
	CodeCancelled:      "cancelled",
	CodeNoProof:        "no proof",
}

var codeErrs = [...]error{
	CodeNone:           ErrClosed,
	CodeProtocol:       ErrProtocol,
	CodeFrameTooLarge:  ErrFrameTooLarge,
	CodeUnknownMessage: ErrUnknownMessage,
	CodeBadIndex:       ErrBadIndex,
	CodeNotFound:       ErrNotFound,
	CodeBusy:           ErrBusy,
	CodeBadNodeID:      ErrBadNodeID,
	CodeVersion:        ErrVersion,
	CodeInternal:       ErrInternal,
	CodeCancelled:      ErrCancelled,
	CodeNoProof:        ErrNoProof,
}

// String returns the code's name.
func (c ErrorCode) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return fmt.Sprintf("code %d", uint16(c))
}

// Err returns the sentinel error of the code, or nil for a code this
// version does not know.
func (c ErrorCode) Err() error {
	if int(c) < len(codeErrs) {
		return codeErrs[c]
	}
	return nil
}

// codeOf returns the code of the first sentinel err matches, or CodeInternal.
func codeOf(err error) ErrorCode {
	for c, s := range codeErrs {
		if errors.Is(err, s) {
			return ErrorCode(c)
		}
	}
	return CodeInternal
}

// MaxReason is the longest reason text an Error frame may carry, in bytes.
const MaxReason = 256

// Error is both a message (an error answer to a request) and the Go error a
// peer's error code turns into. It matches the code's sentinel with errors.Is,
// for example errors.Is(err, ErrNotFound).
type Error struct {
	Code   ErrorCode
	Reason string // at most MaxReason bytes
}

// Error describes the peer's error.
func (e *Error) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("wire: peer error: %s", e.Code)
	}
	return fmt.Sprintf("wire: peer error: %s: %s", e.Code, e.Reason)
}

// Is reports whether target is the sentinel of e's code.
func (e *Error) Is(target error) bool {
	s := e.Code.Err()
	return s != nil && s == target
}
