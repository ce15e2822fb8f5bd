package selector

import (
	"strconv"
	"testing"
)

func BenchmarkEvaluate(b *testing.B) {
	lbls := labels{
		"app":                         "web",
		"tier":                        "frontend",
		"projectcalico.org/namespace": "shop",
		"version":                     "v1.2.3",
	}
	for i := range 16 {
		lbls["extra-"+strconv.Itoa(i)] = "value"
	}
	benches := []struct{ name, sel string }{
		{"all", "all()"},
		{"eq", `app == "web"`},
		{"has", `has(tier)`},
		{"in-8", `app in {"a", "b", "c", "d", "e", "f", "g", "web"}`},
		{"prefix", `version starts with "v1."`},
		{"typical", `projectcalico.org/namespace == "shop" && app == "web" && !has(quarantine)`},
		{"complex", `(app in {"web", "api"} || tier == "frontend") && version != "v0" && !(has(canary) || env not in {"prod", "staging"})`},
	}
	for _, bc := range benches {
		sel := MustParse(bc.sel)
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				sel.Evaluate(lbls)
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	const in = `(app in {"web", "api"} || tier == "frontend") && version != "v0" && !(has(canary) || env not in {"prod", "staging"})`
	for b.Loop() {
		if _, err := Parse(in); err != nil {
			b.Fatal(err)
		}
	}
}
