//go:build !windows

package msg

// systemLanguage: on Unix the locale variables are the system's answer (see Pick).
func systemLanguage() string { return "" }
