package main

import "syscall"

// memberProcAttr puts a member in its own process group (the terminal's ^C goes to the
// parent, which stops the members in order) and has the kernel stop it if the parent dies.
func memberProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
