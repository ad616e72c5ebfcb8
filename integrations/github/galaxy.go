package github

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
)

// InstallCollections installs the collections of a galaxy requirements
// file with `ansible-galaxy collection install -r`, run in the file's
// directory (so relative sources resolve), into Ansible's default
// collections path, where the step's ansible-playbook finds them. The
// output goes to out. Cancelling ctx kills ansible-galaxy.
func InstallCollections(ctx context.Context, requirements string, out io.Writer) error {
	abs, err := filepath.Abs(requirements)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "ansible-galaxy", "collection", "install", "-r", abs)
	cmd.Dir = filepath.Dir(abs)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("installing the collections of %s: ansible-galaxy: %w", requirements, err)
	}
	return nil
}
