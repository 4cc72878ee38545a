package relay

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// keyLines maps field paths such as "server.listen" or "hook[1].retry[2]"
// to the 1-based line where the key (or array element) is written. It only
// serves error messages: values come from the TOML decoder, never from here.
type keyLines map[string]int

// lineOf returns the line of field, or of its nearest parent that has one
// ("hook[2].retry[1]", then "hook[2].retry", then "hook[2]"...). It returns
// 0 when no part of the path is known.
func (kl keyLines) lineOf(field string) int {
	for f := field; f != ""; f = parentField(f) {
		if n, ok := kl[f]; ok {
			return n
		}
	}
	return 0
}

// joinField appends a key to a field path. Keys that are not TOML bare keys
// are quoted, so that "X Api Key" cannot be confused with nested keys.
func joinField(prefix, key string) string {
	if !isBareKey(key) {
		key = strconv.Quote(key)
	}
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// indexField appends an array index to a field path.
func indexField(prefix string, i int) string {
	return prefix + "[" + strconv.Itoa(i) + "]"
}

// parentField drops the last key or index of a field path; it returns ""
// for a top-level key.
func parentField(field string) string {
	last := 0
	inQuote := false
	for i := 0; i < len(field); i++ {
		switch c := field[i]; {
		case inQuote && c == '\\':
			i++
		case c == '"':
			inQuote = !inQuote
		case !inQuote && (c == '.' || c == '['):
			last = i
		}
	}
	return field[:last]
}

func isBareKey(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isBareKeyByte(s[i]) {
			return false
		}
	}
	return true
}

func isBareKeyByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// scanKeyLines records where each key, table and array element of a TOML
// document starts. It is meant for documents the TOML decoder accepted; on
// anything else it gives up on the current line and carries on, so it never
// fails, only knows less.
func scanKeyLines(src string) keyLines {
	s := &lineScanner{src: src, line: 1, lines: keyLines{}, arrays: map[string]int{}}
	s.run()
	return s.lines
}

// maxNesting bounds recursion into arrays and inline tables.
const maxNesting = 100

type lineScanner struct {
	src   string
	i     int
	line  int
	lines keyLines
	// arrays counts the elements seen so far of each [[array of tables]],
	// keyed by its path ("hook", "hook[0].sub").
	arrays map[string]int
	// table is the path of the current [table] or [[array]] element.
	table string
}

func (s *lineScanner) eof() bool { return s.i >= len(s.src) }

// peek returns the current byte, or 0 at the end.
func (s *lineScanner) peek() byte {
	if s.eof() {
		return 0
	}
	return s.src[s.i]
}

func (s *lineScanner) advance() {
	if s.src[s.i] == '\n' {
		s.line++
	}
	s.i++
}

func (s *lineScanner) mark(field string) {
	if _, ok := s.lines[field]; !ok {
		s.lines[field] = s.line
	}
}

// skipBlank skips spaces and tabs.
func (s *lineScanner) skipBlank() {
	for !s.eof() && (s.src[s.i] == ' ' || s.src[s.i] == '\t') {
		s.i++
	}
}

// skipSpace skips whitespace, newlines and comments, as allowed between the
// elements of arrays and (TOML 1.1) inline tables.
func (s *lineScanner) skipSpace() {
	for !s.eof() {
		switch s.src[s.i] {
		case ' ', '\t', '\r', '\n':
			s.advance()
		case '#':
			s.skipComment()
		default:
			return
		}
	}
}

// skipComment skips to the end of the line, leaving the newline.
func (s *lineScanner) skipComment() {
	for !s.eof() && s.src[s.i] != '\n' {
		s.i++
	}
}

// skipLine skips past the end of the current line.
func (s *lineScanner) skipLine() {
	s.skipComment()
	if !s.eof() {
		s.advance()
	}
}

func (s *lineScanner) run() {
	s.src = strings.TrimPrefix(s.src, "\ufeff")
	for !s.eof() {
		s.skipBlank()
		switch s.peek() {
		case 0:
			if !s.eof() { // a NUL byte: not TOML, skip it
				s.i++
			}
		case '\n', '\r':
			s.advance()
		case '#':
			s.skipLine()
		case '[':
			s.header()
			s.skipLine()
		default:
			s.keyValue()
			s.skipLine()
		}
	}
}

// header handles "[a.b]" and "[[a.b]]". Parents that are arrays of tables
// refer to their last element, as in TOML: [hook.auth] after [[hook]].
func (s *lineScanner) header() {
	s.i++ // '['
	isArray := s.peek() == '['
	if isArray {
		s.i++
	}
	parts, ok := s.key()
	if !ok {
		return
	}
	path := ""
	for j, part := range parts {
		path = joinField(path, part)
		if j < len(parts)-1 {
			if n := s.arrays[path]; n > 0 {
				path = indexField(path, n-1)
			}
		}
		s.mark(path)
	}
	if isArray {
		n := s.arrays[path]
		s.arrays[path] = n + 1
		path = indexField(path, n)
		s.lines[path] = s.line
	}
	s.table = path
}

// keyValue handles "key = value" in the current table.
func (s *lineScanner) keyValue() {
	parts, ok := s.key()
	if !ok || s.peek() != '=' {
		return
	}
	s.i++
	path := s.table
	for _, part := range parts {
		path = joinField(path, part)
		s.mark(path)
	}
	s.skipBlank()
	s.value(path, 0)
}

// key reads a possibly dotted, possibly quoted key and the blanks after it.
func (s *lineScanner) key() ([]string, bool) {
	var parts []string
	for {
		s.skipBlank()
		var part string
		switch s.peek() {
		case '"':
			p, ok := s.basicKey()
			if !ok {
				return nil, false
			}
			part = p
		case '\'':
			s.i++
			end := strings.IndexAny(s.src[s.i:], "'\n")
			if end < 0 || s.src[s.i+end] != '\'' {
				return nil, false
			}
			part = s.src[s.i : s.i+end]
			s.i += end + 1
		default:
			start := s.i
			for !s.eof() && isBareKeyByte(s.src[s.i]) {
				s.i++
			}
			if s.i == start {
				return nil, false
			}
			part = s.src[start:s.i]
		}
		parts = append(parts, part)
		s.skipBlank()
		if s.peek() != '.' {
			return parts, true
		}
		s.i++
	}
}

// basicKey reads a "quoted" key and decodes its escapes.
func (s *lineScanner) basicKey() (string, bool) {
	s.i++ // opening quote
	var b strings.Builder
	for !s.eof() {
		c := s.src[s.i]
		switch c {
		case '"':
			s.i++
			return b.String(), true
		case '\n':
			return "", false
		case '\\':
			r, n, ok := decodeEscape(s.src[s.i:])
			if !ok {
				return "", false
			}
			b.WriteRune(r)
			s.i += n
		default:
			b.WriteByte(c)
			s.i++
		}
	}
	return "", false
}

// decodeEscape decodes the TOML escape at the start of s (which begins with
// a backslash) and returns the rune and the number of bytes it used.
func decodeEscape(s string) (rune, int, bool) {
	if len(s) < 2 {
		return 0, 0, false
	}
	switch s[1] {
	case 'b':
		return '\b', 2, true
	case 't':
		return '\t', 2, true
	case 'n':
		return '\n', 2, true
	case 'f':
		return '\f', 2, true
	case 'r':
		return '\r', 2, true
	case 'e':
		return '\x1b', 2, true
	case '"':
		return '"', 2, true
	case '\\':
		return '\\', 2, true
	}
	var digits int
	switch s[1] {
	case 'x':
		digits = 2
	case 'u':
		digits = 4
	case 'U':
		digits = 8
	default:
		return 0, 0, false
	}
	if len(s) < 2+digits {
		return 0, 0, false
	}
	n, err := strconv.ParseUint(s[2:2+digits], 16, 32)
	if err != nil || !utf8.ValidRune(rune(n)) {
		return 0, 0, false
	}
	return rune(n), 2 + digits, true
}

// value skips one value, recording the elements of arrays and the keys of
// inline tables under path. It reports whether the value was well formed.
func (s *lineScanner) value(path string, depth int) bool {
	if depth > maxNesting {
		return false
	}
	switch {
	case strings.HasPrefix(s.src[s.i:], `"""`):
		return s.multiline(`"""`, true)
	case strings.HasPrefix(s.src[s.i:], `'''`):
		return s.multiline(`'''`, false)
	}
	switch s.peek() {
	case '"':
		return s.quoted('"', true)
	case '\'':
		return s.quoted('\'', false)
	case '[':
		return s.array(path, depth)
	case '{':
		return s.inlineTable(path, depth)
	}
	// A number, boolean or date-time; dates may contain a space.
	start := s.i
	for !s.eof() && !strings.ContainsRune(",]}#\r\n", rune(s.src[s.i])) {
		s.i++
	}
	return s.i > start
}

// quoted skips a single-line string.
func (s *lineScanner) quoted(q byte, escapes bool) bool {
	s.i++
	for !s.eof() {
		switch c := s.src[s.i]; {
		case c == q:
			s.i++
			return true
		case c == '\n':
			return false
		case escapes && c == '\\':
			s.i++
		}
		if !s.eof() {
			s.i++
		}
	}
	return false
}

// multiline skips a multi-line string delimited by delim (""" or ”');
// up to two more quotes may end its content.
func (s *lineScanner) multiline(delim string, escapes bool) bool {
	s.i += len(delim)
	for !s.eof() {
		if escapes && s.src[s.i] == '\\' {
			s.advance()
			if !s.eof() {
				s.advance()
			}
			continue
		}
		if strings.HasPrefix(s.src[s.i:], delim) {
			s.i += len(delim)
			for extra := 0; extra < 2 && s.peek() == delim[0]; extra++ {
				s.i++
			}
			return true
		}
		s.advance()
	}
	return false
}

// array records each element i as path[i] at the line where it starts.
func (s *lineScanner) array(path string, depth int) bool {
	s.i++ // '['
	for n := 0; ; n++ {
		s.skipSpace()
		if s.peek() == ']' {
			s.i++
			return true
		}
		if s.eof() {
			return false
		}
		elem := indexField(path, n)
		s.mark(elem)
		if !s.value(elem, depth+1) {
			return false
		}
		s.skipSpace()
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return true
		default:
			return false
		}
	}
}

// inlineTable records each key as path.key at the line where it is written.
func (s *lineScanner) inlineTable(path string, depth int) bool {
	s.i++ // '{'
	for {
		s.skipSpace()
		if s.peek() == '}' {
			s.i++
			return true
		}
		parts, ok := s.key()
		if !ok || s.peek() != '=' {
			return false
		}
		s.i++
		p := path
		for _, part := range parts {
			p = joinField(p, part)
			s.mark(p)
		}
		s.skipBlank()
		if s.eof() || !s.value(p, depth+1) {
			return false
		}
		s.skipSpace()
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return true
		default:
			return false
		}
	}
}
