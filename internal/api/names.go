package api

import (
	"reflect"
	"strings"
)

// WorkloadEndpointName is Calico's name for a workload endpoint:
// <node>-<orchestrator>-<workload>-<endpoint>, with every '-' inside a
// segment doubled so the name splits back unambiguously. For example
// ("host-1", "cni", "0a1b", "eth0") gives "host--1-cni-0a1b-eth0".
func WorkloadEndpointName(node, orchestrator, workload, endpoint string) string {
	esc := func(s string) string { return strings.ReplaceAll(s, "-", "--") }
	return esc(node) + "-" + esc(orchestrator) + "-" + esc(workload) + "-" + esc(endpoint)
}

// DeepCopy returns a copy of r that shares no memory with it.
func DeepCopy(r Resource) Resource {
	if r == nil {
		return nil
	}
	v := reflect.ValueOf(r)
	if v.Kind() == reflect.Pointer && v.IsNil() {
		return r
	}
	return deepCopyValue(v).Interface().(Resource)
}

func deepCopyValue(v reflect.Value) reflect.Value {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return reflect.Zero(v.Type())
		}
		n := reflect.New(v.Type().Elem())
		n.Elem().Set(deepCopyValue(v.Elem()))
		return n
	case reflect.Struct:
		n := reflect.New(v.Type()).Elem()
		n.Set(v) // unexported fields (time.Time's) are values or immutable
		for i := 0; i < v.NumField(); i++ {
			if n.Field(i).CanSet() {
				n.Field(i).Set(deepCopyValue(v.Field(i)))
			}
		}
		return n
	case reflect.Slice:
		if v.IsNil() {
			return reflect.Zero(v.Type())
		}
		n := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		for i := 0; i < v.Len(); i++ {
			n.Index(i).Set(deepCopyValue(v.Index(i)))
		}
		return n
	case reflect.Map:
		if v.IsNil() {
			return reflect.Zero(v.Type())
		}
		n := reflect.MakeMapWithSize(v.Type(), v.Len())
		it := v.MapRange()
		for it.Next() {
			n.SetMapIndex(deepCopyValue(it.Key()), deepCopyValue(it.Value()))
		}
		return n
	case reflect.Interface:
		if v.IsNil() {
			return reflect.Zero(v.Type())
		}
		n := reflect.New(v.Type()).Elem()
		n.Set(deepCopyValue(v.Elem()))
		return n
	default:
		return v
	}
}
