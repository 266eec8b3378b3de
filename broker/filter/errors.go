package filter

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// SyntaxError is a refused SQL92 expression: what is wrong and where. Line and Column are
// 1-based and count characters, as an editor does.
type SyntaxError struct {
	Expr   string // the expression as given
	Offset int    // byte offset of the bad token
	Line   int
	Column int
	Msg    string
}

func (e *SyntaxError) Error() string {
	if e.Line > 1 || strings.ContainsAny(e.Expr, "\n\r") {
		return fmt.Sprintf("SQL92 filter: at line %d, column %d: %s", e.Line, e.Column, e.Msg)
	}
	return fmt.Sprintf("SQL92 filter: at column %d: %s", e.Column, e.Msg)
}

// errorAt builds the SyntaxError for byte offset pos of src.
func errorAt(src string, pos int, msg string) *SyntaxError {
	pos = min(max(pos, 0), len(src))
	line, col := 1, 1
	for i := 0; i < pos; {
		r, n := utf8.DecodeRuneInString(src[i:])
		i += n
		switch {
		case r == '\n' || r == '\r' && (i >= len(src) || src[i] != '\n'):
			line, col = line+1, 1
		case r == '\r':
			// the \n of a \r\n ends the line
		default:
			col++
		}
	}
	return &SyntaxError{Expr: src, Offset: pos, Line: line, Column: col, Msg: msg}
}
