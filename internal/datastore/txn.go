package datastore

import (
	"errors"
	"fmt"
)

// MaxTxnOps is the most ops one Txn may hold: etcd's default limit
// (--max-txn-ops), enforced by every Store so code tested on memstore
// works on any etcd.
const MaxTxnOps = 128

// CheckOps rejects a transaction no Store can apply: more than MaxTxnOps
// ops, an unknown op type, an empty key, or a key written by more than one
// op (a key may be checked and written by two ops).
func CheckOps(ops []Op) error {
	if len(ops) > MaxTxnOps {
		return fmt.Errorf("txn of %d ops: at most %d allowed", len(ops), MaxTxnOps)
	}
	written := make(map[string]int, len(ops))
	for i, op := range ops {
		if op.Type < OpCreate || op.Type > OpCheck {
			return fmt.Errorf("txn op %d (%q): unknown op type %d", i, op.Key, op.Type)
		}
		if op.Key == "" {
			return fmt.Errorf("txn op %d: empty key", i)
		}
		if op.Type == OpCheck {
			continue
		}
		if j, ok := written[op.Key]; ok {
			return fmt.Errorf("txn ops %d and %d both write key %q", j, i, op.Key)
		}
		written[op.Key] = i
	}
	return nil
}

// TxnFailure explains why ops could not apply, given the current value of
// each op's key (cur[i] for ops[i], nil when absent): the first op whose
// condition fails decides the error (ErrExists for OpCreate, ErrNotFound
// for OpUpdate or OpDelete of a missing key, ErrConflict otherwise).
func TxnFailure(ops []Op, cur []*KV) error {
	for i, op := range ops {
		kv := cur[i]
		switch op.Type {
		case OpCreate:
			if kv != nil {
				return fmt.Errorf("create %s: %w (at revision %d)", op.Key, ErrExists, kv.Revision)
			}
		case OpUpdate, OpDelete:
			verb := "update"
			if op.Type == OpDelete {
				verb = "delete"
			}
			if kv == nil {
				return fmt.Errorf("%s %s: %w", verb, op.Key, ErrNotFound)
			}
			if kv.Revision != op.Revision {
				return fmt.Errorf("%s %s at revision %d: %w (now at %d)", verb, op.Key, op.Revision, ErrConflict, kv.Revision)
			}
		case OpCheck:
			if op.Revision == 0 && kv != nil {
				return fmt.Errorf("check %s absent: %w (exists at revision %d)", op.Key, ErrConflict, kv.Revision)
			}
			if op.Revision != 0 && kv == nil {
				return fmt.Errorf("check %s at revision %d: %w (key is gone)", op.Key, op.Revision, ErrConflict)
			}
			if op.Revision != 0 && kv.Revision != op.Revision {
				return fmt.Errorf("check %s at revision %d: %w (now at %d)", op.Key, op.Revision, ErrConflict, kv.Revision)
			}
		}
	}
	return errors.Join(ErrConflict, errors.New("transaction condition failed"))
}
