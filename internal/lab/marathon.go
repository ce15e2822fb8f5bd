package lab

import (
	"fmt"
	"strings"
)

// Marathon's framework name, as Mesos-DNS and DC/OS DNS see it.
const MarathonFramework = "marathon"

// NormalizeMesosApp checks a Marathon app ID and returns it absolute:
// "/group/app" (or "group/app"); each path segment is lower-case letters,
// digits and hyphens (not at either end), dot-separated parts allowed.
func NormalizeMesosApp(app string) (string, error) {
	if app == "" {
		return "", fmt.Errorf("mesos app %q: empty", app)
	}
	p := strings.TrimPrefix(app, "/")
	if p == "" {
		return "", fmt.Errorf("mesos app %q: the root group is not an app", app)
	}
	if len(app) > 200 {
		return "", fmt.Errorf("mesos app %q: longer than 200 characters", app)
	}
	for _, seg := range strings.Split(p, "/") {
		if err := validAppSegment(seg); err != nil {
			return "", fmt.Errorf("mesos app %q: segment %q %s", app, seg, err)
		}
	}
	return "/" + p, nil
}

func validAppSegment(seg string) error {
	if seg == "" {
		return fmt.Errorf("is empty")
	}
	if seg == "." || seg == ".." {
		return fmt.Errorf("is relative; give the absolute app ID")
	}
	for _, part := range strings.Split(seg, ".") {
		if part == "" {
			return fmt.Errorf("has an empty dot-separated part")
		}
		for i, r := range part {
			switch {
			case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			case r == '-' && i > 0 && i < len(part)-1:
			default:
				return fmt.Errorf("may hold only lower-case letters, digits and inner hyphens")
			}
		}
	}
	return nil
}

// MarathonNames returns the Mesos task name and ID Marathon gives an
// instance of app (absolute, normalized) with instance UUID id: app
// /outergroup/subgroup/myapp is task "myapp.subgroup.outergroup" with ID
// "outergroup_subgroup_myapp.<id>".
func MarathonNames(app, id string) (taskName, taskID string) {
	parts := strings.Split(strings.TrimPrefix(app, "/"), "/")
	rev := make([]string, len(parts))
	for i, p := range parts {
		rev[len(parts)-1-i] = p
	}
	return strings.Join(rev, "."), strings.Join(parts, "_") + "." + id
}
