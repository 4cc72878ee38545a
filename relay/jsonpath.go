package relay

import (
	"bytes"
	"strconv"
)

// These helpers find members of a JSON document by name without decoding
// it, for the inbound path (event type and id) and the hooks' payload
// filters. Like the walkers in jsonscan.go they assume valid JSON: callers
// check it once with validJSON.

// objectMember returns the raw value of the member called name of the
// JSON object that starts at doc (after optional white space). When the
// name appears more than once the last one wins, as in encoding/json and
// in most receivers' parsers, so a filter sees what the receiver will.
func objectMember(doc []byte, name string) ([]byte, bool) {
	i := skipSpace(doc, 0)
	if i >= len(doc) || doc[i] != '{' {
		return nil, false
	}
	var found []byte
	objectMembers(doc[i:], func(key, value []byte) error {
		if keyIs(key, name) {
			found = value
		}
		return nil
	})
	return found, found != nil
}

// keyIs reports whether the raw JSON string key (quotes included) decodes
// to name.
func keyIs(key []byte, name string) bool {
	if len(key) < 2 {
		return false
	}
	inner := key[1 : len(key)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner) == name
	}
	s, ok := jsonString(key)
	return ok && s == name
}

// lookupPath follows path, a list of member names, from the top of doc and
// returns the raw value found there. Every step but the last must be an
// object; arrays are not indexed.
func lookupPath(doc []byte, path []string) ([]byte, bool) {
	v := doc
	for _, name := range path {
		var ok bool
		if v, ok = objectMember(v, name); !ok {
			return nil, false
		}
	}
	return v, true
}

// arrayElements calls fn with the raw value of each element of the JSON
// array that starts at b[0] == '['. b must be valid JSON.
func arrayElements(b []byte, fn func(value []byte) error) error {
	i := skipSpace(b, 1)
	if i < len(b) && b[i] == ']' {
		return nil
	}
	for i < len(b) {
		end := skipValue(b, i)
		if err := fn(b[i:end]); err != nil {
			return err
		}
		i = skipSpace(b, end)
		if i >= len(b) || b[i] == ']' {
			return nil
		}
		i = skipSpace(b, i+1) // ','
	}
	return nil
}

// scalarText returns a JSON string's value or a number's text; ok is false
// for any other value (object, array, true, false, null).
func scalarText(raw []byte) (string, bool) {
	if len(raw) == 0 {
		return "", false
	}
	switch c := raw[0]; {
	case c == '"':
		return jsonString(raw)
	case c == '-' || c >= '0' && c <= '9':
		return string(raw), true
	}
	return "", false
}

// matchesValue reports whether the raw JSON value equals want, which is a
// string, an int64 or a bool as read from the configuration. Numbers are
// compared by value, so 1, 1.0 and 1e0 all equal int64(1).
func matchesValue(raw []byte, want any) bool {
	if len(raw) == 0 {
		return false
	}
	switch w := want.(type) {
	case string:
		s, ok := jsonString(raw)
		return ok && s == w
	case bool:
		return string(raw) == strconv.FormatBool(w)
	case int64:
		if c := raw[0]; c != '-' && (c < '0' || c > '9') {
			return false
		}
		if n, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
			return n == w
		}
		f, err := strconv.ParseFloat(string(raw), 64)
		return err == nil && f == float64(w)
	}
	return false
}
