package health

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// ErrAPIPasswordRefused: the node accepts neither the held nor the new API password.
var ErrAPIPasswordRefused = errors.New("the node accepts neither the held nor the rotated API password")

// ChangeAPIPassword moves the node's API user from the held password to the rotated one, the only way the node
// has (its .api file seeds the first user of an empty database and is ignored after that): log in with the held
// password, PATCH /v2/user/password, and log in with the new one to be sure. A node that already takes the new
// password (an earlier attempt got that far) is done. No password goes into an error.
func ChangeAPIPassword(ctx context.Context, baseURL, email, held, rotated string) error {
	base := strings.TrimRight(baseURL, "/")
	api := NewNodeAPI(base, fixed(email, held))
	if err := api.login(ctx); err != nil {
		switch {
		case !errors.Is(err, errRefused):
			return fmt.Errorf("change the node's API password: %w", err)
		case NewNodeAPI(base, fixed(email, rotated)).login(ctx) == nil:
			return nil // changed already
		}
		return fmt.Errorf("change the node's API password: %w", ErrAPIPasswordRefused)
	}
	code, answer, err := api.sendJSON(ctx, http.MethodPatch, "/v2/user/password", map[string]string{"oldPassword": held, "newPassword": rotated})
	switch {
	case err != nil:
		return fmt.Errorf("change the node's API password: PATCH /v2/user/password: %w", err)
	case code != http.StatusOK:
		return fmt.Errorf("change the node's API password: PATCH /v2/user/password answered %d: %s", code, apiErrorDetail(answer))
	}
	if err := NewNodeAPI(base, fixed(email, rotated)).login(ctx); err != nil {
		return fmt.Errorf("change the node's API password: the node does not take the new one after the change: %w", err)
	}
	return nil
}

func fixed(email, password string) Credentials {
	return func() (string, string, bool) { return email, password, true }
}
