package gitserver_test

import "fmt"

func appendPktForTest(payload string) []byte {
	return []byte(fmt.Sprintf("%04x%s", len(payload)+4, payload))
}

func fmtSscanfHex(s string, n *int) (int, error) { return fmt.Sscanf(s, "%04x", n) }
