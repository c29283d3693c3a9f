//go:build windows

package msg

import "golang.org/x/sys/windows"

// systemLanguage is the user's first UI language ("zh-CN", "en-US"): Windows sets no locale
// variables, and a clinic PC runs the Chinese edition.
func systemLanguage() string {
	langs, err := windows.GetUserPreferredUILanguages(windows.MUI_LANGUAGE_NAME)
	if err != nil || len(langs) == 0 {
		return ""
	}
	return langs[0]
}
