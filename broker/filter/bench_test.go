package filter

import (
	"testing"

	"github.com/stratamq/strata/broker/message"
)

// BenchmarkMatchEncoded measures one evaluation on a stored record's properties, beside
// the cost of only finding a property (the floor of any filter) in the same run.
// go test -run '^$' -bench MatchEncoded ./broker/filter/
func BenchmarkMatchEncoded(b *testing.B) {
	props := message.EncodeProperties(map[string]string{
		"UNIQ_KEY": "7F0000011F9018B4AAC2", "TAGS": "TagA", "KEYS": "order-42", "WAIT": "true",
		"a": "15", "color": "red",
	})
	b.Run("find-property", func(b *testing.B) {
		for b.Loop() {
			encodedValue(props, "color")
		}
	})
	for _, expr := range []string{"color = 'red'", "a BETWEEN 10 AND 20 AND color = 'red'", "TAGS IN ('TagA', 'TagB') OR a > 2.5"} {
		x, err := Compile(expr)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(expr, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !x.MatchEncoded(props) {
					b.Fatal("no match")
				}
			}
		})
	}
}
