package main

import (
	"fmt"
	"io"
)

// runValidate is the node's `node -config … -secrets … validate`: the configuration and the secrets read and
// checked by the rules start applies, nothing started, no database or chain dialled (v2.19.0 does the same). Exit
// 0, or exit 1 with a line that starts with the real node's verdict, "Invalid configuration:", and names the file
// and the key, never a value (inputError carries none). The stand-in models a part of the node's schema and
// ignores the keys it does not model, where the real node refuses an unknown key.
func runValidate(inv invocation, env lookupEnv, stdout io.Writer) error {
	if _, err := loadTOMLConfig(inv, env); err != nil {
		fmt.Fprintf(stdout, "Invalid configuration: %v\n", err)
		return exitWith(1, err)
	}
	fmt.Fprintln(stdout, "Valid configuration.")
	return nil
}
