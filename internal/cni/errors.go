package cni

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/containernetworking/cni/pkg/types"
)

// Error is a failure that carries a CNI error code (types.ErrXxx). It
// wraps the errors it was made from, so errors.Is and errors.As see
// through it.
type Error struct {
	Code    uint
	Msg     string
	Details string
	cause   error
}

// Errorf returns an *Error with the given CNI code and a message formatted
// as fmt.Errorf does (%w wraps).
func Errorf(code uint, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return &Error{Code: code, Msg: err.Error(), cause: err}
}

// withCause returns an *Error with a formatted message that wraps cause
// without repeating its text.
func withCause(code uint, cause error, format string, args ...any) error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...), cause: cause}
}

func (e *Error) Error() string {
	if e.Details != "" {
		return e.Msg + "; " + e.Details
	}
	return e.Msg
}

// Unwrap returns the error the message was made from.
func (e *Error) Unwrap() error { return e.cause }

// CodeOf returns the CNI error code carried by err or by any error it
// wraps (an *Error or a *types.Error), or def when there is none.
func CodeOf(err error, def uint) uint {
	var ce *Error
	if errors.As(err, &ce) {
		return ce.Code
	}
	var te *types.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return def
}

// AsTypesError converts err to the CNI library's error type, keeping its
// code (def when it carries none) and using the whole wrapped message.
func AsTypesError(err error, def uint) *types.Error {
	if err == nil {
		return nil
	}
	var te *types.Error
	if errors.As(err, &te) && te == err {
		return te
	}
	var ce *Error
	if errors.As(err, &ce) && ce == err {
		return &types.Error{Code: ce.Code, Msg: ce.Msg, Details: ce.Details}
	}
	return &types.Error{Code: CodeOf(err, def), Msg: err.Error()}
}

// errorJSON is the CNI error result: the spec includes cniVersion, which
// the CNI library's types.Error leaves out.
type errorJSON struct {
	CNIVersion string `json:"cniVersion"`
	Code       uint   `json:"code"`
	Msg        string `json:"msg"`
	Details    string `json:"details,omitempty"`
}

// WriteError writes e as a CNI error result for a caller speaking
// cniVersion ("" means the caller's config had no version: 0.2.0).
func WriteError(w io.Writer, cniVersion string, e *types.Error) error {
	out, err := json.MarshalIndent(errorJSON{
		CNIVersion: ResultVersion(cniVersion),
		Code:       e.Code,
		Msg:        e.Msg,
		Details:    e.Details,
	}, "", "    ")
	if err != nil {
		return fmt.Errorf("encode CNI error: %w", err)
	}
	_, err = w.Write(append(out, '\n'))
	return err
}
