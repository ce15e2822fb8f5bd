// Package netlinkdump retries netlink dumps that the kernel flagged as
// interrupted (NLM_F_DUMP_INTR: the table changed while it was being
// read). Every netlink list in Tabby goes through Retry, so the retry
// policy exists once.
//
// containernetworking/plugins' netlinksafe does the same job but, after
// its last attempt, returns the possibly inconsistent data with no error
// and logs through the global logger. Tabby's drivers diff a dump against
// the desired state and delete what is missing, so an incomplete dump must
// be an error, never a silent answer.
//
// It imports only netlink; it must not import any Tabby package.
package netlinkdump

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
)

// Attempts bounds the calls Retry makes.
const Attempts = 5

// Retry calls dump until it returns something other than
// netlink.ErrDumpInterrupted, at most Attempts times. When every attempt
// was interrupted it returns an error wrapping netlink.ErrDumpInterrupted.
func Retry[T any](dump func() (T, error)) (T, error) {
	var v T
	var err error
	for range Attempts {
		v, err = dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	var zero T
	return zero, fmt.Errorf("netlink dump interrupted %d times: %w", Attempts, err)
}
