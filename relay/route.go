package relay

import "sync"

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

	mu    sync.RWMutex
	cache map[string][]string
}

type routeHook struct {
	name     string
	patterns []string
}

const routeCacheMax = 4096

func newRouter(hooks []HookConfig) *router {
	r := &router{cache: make(map[string][]string)}
	for _, h := range hooks {
		r.hooks = append(r.hooks, routeHook{name: h.Name, patterns: h.Events})
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
