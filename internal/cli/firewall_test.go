package cli

import (
	"fmt"
	"strings"
	"testing"
)

func TestCollapseElements(t *testing.T) {
	var b strings.Builder
	b.WriteString("table inet pbxgate {}\nadd element inet pbxgate trusted4 { 10.0.0.0/8 }\nadd element inet pbxgate geo0_4 {\n")
	for i := range 30 {
		fmt.Fprintf(&b, "\t10.%d.0.0/16,\n", i)
	}
	b.WriteString("\t11.0.0.0/8\n}\nadd element inet pbxgate geo0_6 {\n\t2001:db8::/32\n}\n")
	got := collapseElements(b.String())
	want := "table inet pbxgate {}\nadd element inet pbxgate trusted4 { 10.0.0.0/8 }\n" +
		"# add element inet pbxgate geo0_4 ... }: 31 elements, sha256 "
	if !strings.HasPrefix(got, want) || !strings.Contains(got, "(plan --full shows them)\nadd element inet pbxgate geo0_6 {\n\t2001:db8::/32\n}\n") {
		t.Fatalf("collapsed:\n%s", got)
	}
	// A changed element changes the checksum, so a diff shows the set changed.
	if other := collapseElements(strings.Replace(b.String(), "10.7.0.0/16", "10.7.0.0/17", 1)); other == got {
		t.Error("checksum does not cover the elements")
	}
}
