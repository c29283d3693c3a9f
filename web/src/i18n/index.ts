import { createI18n } from 'vue-i18n';
import zhCN from './zh-CN.json';
import en from './en.json';

// One catalog per language; zh-CN is the schema every other catalog must match
// (i18n.test.ts fails when their keys differ).
export type MessageSchema = typeof zhCN;
export const LOCALES = ['zh-CN', 'en'] as const;
export type Locale = (typeof LOCALES)[number];

const STORAGE_KEY = 'sanping.locale';

function initialLocale(): Locale {
  try {
    const saved = localStorage.getItem(STORAGE_KEY);
    if (saved === 'zh-CN' || saved === 'en') return saved;
  } catch {
    // storage disabled: Chinese, as for everyone else
  }
  return 'zh-CN';
}

export const i18n = createI18n<[MessageSchema], Locale, false>({
  legacy: false,
  locale: initialLocale(),
  fallbackLocale: 'zh-CN',
  messages: { 'zh-CN': zhCN, en },
  missingWarn: false,
  fallbackWarn: false,
});

/** setLocale switches the language, remembers it on this device and tells the page. */
export function setLocale(locale: Locale): void {
  i18n.global.locale.value = locale;
  document.documentElement.lang = locale;
  try {
    localStorage.setItem(STORAGE_KEY, locale);
  } catch {
    // not remembered; the switch still works for this page
  }
}

export function currentLocale(): Locale {
  return i18n.global.locale.value;
}
