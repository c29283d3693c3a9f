// Package msg holds what the station program says to the clinic's technician, in Simplified
// Chinese first and English second, and picks the language from a flag or the locale. Chinese
// is also the answer for a locale that names neither (C, POSIX, unset): the product is made
// for Chinese clinics.
//
// Messages are keyed by their English text (golang.org/x/text/message's convention): a
// message without a Chinese entry prints in English, and TestCatalog fails when a key used in
// the code has no Chinese entry or the two disagree on their verbs.
package msg

import (
	"fmt"
	"io"
	"strings"

	"golang.org/x/text/language"
	"golang.org/x/text/message"
	"golang.org/x/text/message/catalog"
)

// Printer formats the station's messages in one language.
type Printer struct {
	tag language.Tag
	p   *message.Printer
}

// New returns a printer for tag, which must be one of the supported languages' tags (see Pick).
func New(tag language.Tag) *Printer {
	b := catalog.NewBuilder(catalog.Fallback(language.English))
	for k, v := range zhHans {
		// SetString fails only on a malformed tag, and the tag is a constant.
		_ = b.SetString(language.SimplifiedChinese, k, v)
	}
	return &Printer{tag: tag, p: message.NewPrinter(tag, message.Catalog(b))}
}

// Chinese reports whether the printer speaks Chinese.
func (p *Printer) Chinese() bool { return p.tag == language.SimplifiedChinese }

// Tr is the message key, formatted with args, in the printer's language.
func (p *Printer) Tr(key string, args ...any) string { return p.p.Sprintf(key, args...) }

// Trf writes Tr(key, args...) to w.
func (p *Printer) Trf(w io.Writer, key string, args ...any) {
	fmt.Fprint(w, p.p.Sprintf(key, args...))
}

// Pick chooses the language: flag when given ("zh", "zh-CN", "en", ...), else the first of the
// environment's SANPING_LANG, LC_ALL, LC_MESSAGES and LANG that is set (POSIX locale names
// such as "en_US.UTF-8" or "zh_CN.GB18030"), else the system's (Windows: the user's UI
// language; elsewhere none), else Chinese. A value that names no language is an error.
func Pick(flag string, getenv func(string) string) (language.Tag, error) {
	if flag != "" {
		t, ok := match(flag)
		if !ok {
			return language.Und, fmt.Errorf("unknown language %q (zh or en)", flag)
		}
		return t, nil
	}
	for _, name := range []string{"SANPING_LANG", "LC_ALL", "LC_MESSAGES", "LANG"} {
		if v := getenv(name); v != "" {
			if t, ok := match(v); ok {
				return t, nil
			}
			if name == "SANPING_LANG" {
				return language.Und, fmt.Errorf("SANPING_LANG=%q names no language (zh or en)", v)
			}
			// POSIX: the first variable set decides, C and POSIX included.
			return language.SimplifiedChinese, nil
		}
	}
	if v := systemLanguage(); v != "" {
		if t, ok := match(v); ok {
			return t, nil
		}
	}
	return language.SimplifiedChinese, nil
}

// match maps a language name or POSIX locale to a supported tag.
func match(v string) (language.Tag, bool) {
	v, _, _ = strings.Cut(v, ".") // zh_CN.UTF-8
	v, _, _ = strings.Cut(v, "@")
	v = strings.ReplaceAll(v, "_", "-")
	if v == "" || v == "C" || v == "POSIX" {
		return language.Und, false
	}
	t, err := language.Parse(v)
	if err != nil {
		return language.Und, false
	}
	base, conf := t.Base()
	if conf == language.No {
		return language.Und, false
	}
	if base.String() == "en" {
		return language.English, true
	}
	// Chinese in any script, and any other language: the clinics served read Chinese (a
	// Zhuang or Yao locale in Guangxi included), so Chinese is the better second language.
	return language.SimplifiedChinese, true
}
