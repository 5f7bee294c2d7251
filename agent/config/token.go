package config

import (
	"errors"
	"io"
	"os"
	"strings"
)

// maxTokenFileBytes bounds what ReadTokenFile reads: a bearer token is tens of bytes, never a whole file.
const maxTokenFileBytes = 4096

// ReadTokenFile reads the bearer token of health.metrics_token_file: a regular file that not every user may read
// or write, holding one token of printable ASCII without spaces (white space around it, such as the final
// newline, is trimmed). The token is a secret: no error carries it, only the path and the rule.
func ReadTokenFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", detail(ErrInvalid, "cannot read the token file: %v", errors.Unwrap(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", detail(ErrInvalid, "cannot stat the token file: %v", err)
	}
	switch perm := fi.Mode().Perm(); {
	case !fi.Mode().IsRegular():
		return "", detail(ErrInvalid, "the token file must be a regular file, not %s", fi.Mode().Type())
	case perm&0o006 != 0:
		return "", detail(ErrInvalid, "the token file is readable or writable by every user (mode %04o): chmod 0600 it", perm)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxTokenFileBytes+1))
	if err != nil {
		return "", detail(ErrInvalid, "cannot read the token file: %v", err)
	}
	if len(data) > maxTokenFileBytes {
		return "", detail(ErrInvalid, "the token file is over %d bytes: it must hold just the token", maxTokenFileBytes)
	}
	token := strings.TrimSpace(string(data))
	if token == "" {
		return "", detail(ErrInvalid, "the token file is empty: write the token into it, or leave health.metrics_token_file unset")
	}
	for i := 0; i < len(token); i++ {
		if token[i] < 0x21 || token[i] > 0x7e {
			return "", detail(ErrInvalid, "the token must be one word of printable ASCII (byte %d is not)", i+1)
		}
	}
	return token, nil
}
