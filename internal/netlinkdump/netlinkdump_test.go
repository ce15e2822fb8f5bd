package netlinkdump

import (
	"errors"
	"testing"

	"github.com/vishvananda/netlink"
)

func TestRetry(t *testing.T) {
	other := errors.New("permission denied")
	for _, tc := range []struct {
		name        string
		interrupted int // leading interrupted attempts
		final       error
		wantCalls   int
		wantValue   int
		wantErr     error
	}{
		{name: "first try", interrupted: 0, wantCalls: 1, wantValue: 7},
		{name: "interrupted then complete", interrupted: Attempts - 1, wantCalls: Attempts, wantValue: 7},
		{name: "always interrupted", interrupted: Attempts + 3, wantCalls: Attempts, wantErr: netlink.ErrDumpInterrupted},
		{name: "other error is not retried", interrupted: 0, final: other, wantCalls: 1, wantErr: other},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			v, err := Retry(func() (int, error) {
				calls++
				if calls <= tc.interrupted {
					return 99, netlink.ErrDumpInterrupted // partial data
				}
				if tc.final != nil {
					return 0, tc.final
				}
				return 7, nil
			})
			if calls != tc.wantCalls {
				t.Errorf("calls = %d; want %d", calls, tc.wantCalls)
			}
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Errorf("error = %v; want %v", err, tc.wantErr)
			}
			if tc.wantErr == nil && v != tc.wantValue {
				t.Errorf("value = %d; want %d", v, tc.wantValue)
			}
			if tc.wantErr != nil && v != 0 {
				t.Errorf("value = %d with an error; want the zero value, never partial data", v)
			}
		})
	}
}
