package selector_test

import (
	"fmt"

	"github.com/tabbynet/tabby/internal/api/selector"
)

func Example() {
	sel, err := selector.Parse(`app == 'web' && tier in {'db', 'cache'} || !has(role)`)
	if err != nil {
		panic(err)
	}
	fmt.Println(sel)
	fmt.Println(sel.LabelKeys())
	fmt.Println(sel.Evaluate(map[string]string{"app": "web", "tier": "db", "role": "x"}))
	fmt.Println(sel.Evaluate(map[string]string{"app": "web", "tier": "api", "role": "x"}))
	fmt.Println(sel.Evaluate(map[string]string{"tier": "api"}))

	_, err = selector.Parse(`app == `)
	fmt.Println(err)
	// Output:
	// ((app == "web" && tier in {"cache", "db"}) || !has(role))
	// [app role tier]
	// true
	// false
	// true
	// selector "app == ": position 7: expected a quoted string after "==", found end of input
}
