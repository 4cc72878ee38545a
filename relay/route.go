package relay

import (
	"slices"
	"sync"
)

// matchGlob reports whether name matches pattern, where '*' matches any run
// of characters (including none and including dots) and every other byte
// matches itself. It runs in O(len(pattern)*len(name)) at worst, with no
// recursion, so hostile patterns or names cannot blow up.
func matchGlob(pattern, name string) bool {
	p, n := 0, 0
	star, mark := -1, 0
	for n < len(name) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, n
			p++
		case p < len(pattern) && pattern[p] == name[n]:
			p++
			n++
		case star >= 0:
			p = star + 1
			mark++
			n = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// router maps an event type to the hooks subscribed to it. Results are
// cached per type; the cache is bounded so that many distinct types
// cannot grow memory without limit.
type router struct {
	hooks []routeHook
	// byName indexes hooks; filtered is set when any hook has a sources
	// or match filter, which routeEvent applies after the type.
	byName   map[string]int
	filtered bool

	mu    sync.RWMutex
	cache map[string][]string
}

type routeHook struct {
	name     string
	patterns []string
	sources  []string
	match    []MatchRule
}

const routeCacheMax = 4096

func newRouter(hooks []HookConfig) *router {
	r := &router{cache: make(map[string][]string), byName: make(map[string]int, len(hooks))}
	for i, h := range hooks {
		r.hooks = append(r.hooks, routeHook{name: h.Name, patterns: h.Events, sources: h.Sources, match: h.Match})
		r.byName[h.Name] = i
		r.filtered = r.filtered || len(h.Sources) > 0 || len(h.Match) > 0
	}
	return r
}

// route returns the names of the hooks that subscribe to eventType, in
// configuration order. The returned slice must not be modified.
func (r *router) route(eventType string) []string {
	r.mu.RLock()
	names, ok := r.cache[eventType]
	r.mu.RUnlock()
	if ok {
		return names
	}
	names = r.match(eventType)
	r.mu.Lock()
	if len(r.cache) >= routeCacheMax {
		clear(r.cache)
	}
	r.cache[eventType] = names
	r.mu.Unlock()
	return names
}

func (r *router) match(eventType string) []string {
	var names []string
	for _, h := range r.hooks {
		for _, p := range h.patterns {
			if matchGlob(p, eventType) {
				names = append(names, h.name)
				break
			}
		}
	}
	return names
}

// routeEvent returns the hooks that receive an event of eventType from
// origin (an Event.Source value) whose delivered body is body: those
// subscribed to the type whose sources and match filters accept it. body
// must be valid JSON when any hook has a match filter. Without filters it
// is route; the returned slice must not be modified.
func (r *router) routeEvent(origin, eventType string, body []byte) []string {
	names := r.route(eventType)
	if !r.filtered {
		return names
	}
	var out []string
	for i, name := range names {
		if r.hooks[r.byName[name]].accepts(origin, body) {
			if out != nil {
				out = append(out, name)
			}
			continue
		}
		if out == nil {
			out = make([]string, i, len(names))
			copy(out, names[:i])
		}
	}
	if out == nil {
		return names
	}
	return out
}

// accepts reports whether the hook's sources and match filters let an
// event through.
func (h *routeHook) accepts(origin string, body []byte) bool {
	if len(h.sources) > 0 && !slices.Contains(h.sources, origin) {
		return false
	}
	for _, rule := range h.match {
		raw, ok := lookupPath(body, rule.Path)
		if !ok {
			return false
		}
		if !slices.ContainsFunc(rule.Values, func(v any) bool { return matchesValue(raw, v) }) {
			return false
		}
	}
	return true
}
