package api

import (
	"fmt"
	"net/netip"
)

// ValidateUpdate rejects an update of old to new that changes what may not
// change: the kind, the name and namespace, and an IPPool's cidr and
// blockSize (blocks already carved from the pool depend on both). Defaults
// are applied to copies first, so an omitted blockSize equals its default.
// It does not check new on its own: call Validate for that.
func ValidateUpdate(old, new Resource) error {
	if old == nil || new == nil {
		return FieldErrors{{Detail: "no resource"}}
	}
	ok, nk := old.KindInfo().Kind, new.KindInfo().Kind
	if ok != nk {
		return FieldErrors{{Field: "kind", Detail: fmt.Sprintf("%s cannot become %s", ok, nk)}}
	}
	o, n := DeepCopy(old), DeepCopy(new)
	SetDefaults(o)
	SetDefaults(n)
	var p problems
	om, nm := o.GetObjectMeta(), n.GetObjectMeta()
	if om.Name != nm.Name {
		p.add("metadata.name", "cannot change (from %s to %s)", quote(om.Name), quote(nm.Name))
	}
	if om.Namespace != nm.Namespace {
		p.add("metadata.namespace", "cannot change (from %s to %s)", quote(om.Namespace), quote(nm.Namespace))
	}
	if op, ok := o.(*IPPool); ok {
		np := n.(*IPPool)
		if op.Spec.CIDR != np.Spec.CIDR {
			p.add("spec.cidr", "cannot change (from %s to %s); create a new pool and disable this one instead", quote(op.Spec.CIDR), quote(np.Spec.CIDR))
		}
		if op.Spec.BlockSize != np.Spec.BlockSize {
			p.add("spec.blockSize", "cannot change (from %d to %d)", op.Spec.BlockSize, np.Spec.BlockSize)
		}
	}
	return p.err()
}

// PoolsOverlap reports whether two CIDRs share any address. CIDRs that do
// not parse, or are of different IP versions, do not overlap.
func PoolsOverlap(a, b string) bool {
	pa, err1 := netip.ParsePrefix(a)
	pb, err2 := netip.ParsePrefix(b)
	if err1 != nil || err2 != nil {
		return false
	}
	return pa.Masked().Overlaps(pb.Masked())
}

// CheckPoolOverlap returns an error if p overlaps any of existing; a pool
// of the same name is p's own previous version and is skipped.
func CheckPoolOverlap(existing []*IPPool, p *IPPool) error {
	for _, e := range existing {
		if e == nil || e.Name == p.Name {
			continue
		}
		if PoolsOverlap(e.Spec.CIDR, p.Spec.CIDR) {
			return fmt.Errorf("pool %s (%s) overlaps pool %s (%s)", quote(p.Name), p.Spec.CIDR, quote(e.Name), e.Spec.CIDR)
		}
	}
	return nil
}
