import { fileURLToPath, URL } from 'node:url';
import { defineConfig } from 'vitest/config';
import vue from '@vitejs/plugin-vue';
import Components from 'unplugin-vue-components/vite';
import { ElementPlusResolver } from 'unplugin-vue-components/resolvers';
import VueI18nPlugin from '@intlify/unplugin-vue-i18n/vite';

// The app is embedded in the Go binary from dist/app (web/embed.go) and served at / with a
// strict Content-Security-Policy (web/handler.go): no inline script, no eval.
export default defineConfig({
  plugins: [
    vue(),
    // Element Plus components and their CSS are imported where a template uses them, so the
    // sign-in page carries a form, not the whole library.
    Components({
      resolvers: [ElementPlusResolver({ importStyle: 'css' })],
      dts: 'src/components.d.ts',
    }),
    // Catalogs are compiled to functions at build time and vue-i18n's runtime-only build is
    // used: the full build compiles messages with new Function, which the CSP forbids.
    VueI18nPlugin({
      include: [fileURLToPath(new URL('./src/i18n/*.json', import.meta.url))],
      runtimeOnly: true,
      compositionOnly: true,
      fullInstall: false,
      strictMessage: true,
      escapeHtml: true,
    }),
  ],
  resolve: {
    // xmlbuilder2 (a dependency of Cornerstone's loader) extends Node's EventEmitter: the npm
    // `events` package stands in for it, or the production build fails at load with "Class
    // extends value undefined".
    alias: { '@': fileURLToPath(new URL('./src', import.meta.url)), events: 'events/' },
  },
  // The DICOM image loader starts its decode workers as ES modules (new Worker(new URL(...),
  // { type: 'module' })), and pre-bundling it would break the worker's URL.
  worker: { format: 'es' },
  optimizeDeps: { exclude: ['@cornerstonejs/dicom-image-loader'] },
  build: {
    outDir: 'dist/app',
    // dist/.gitkeep stays (go:embed needs a file there on a fresh clone).
    emptyOutDir: true,
    assetsDir: 'assets',
    manifest: false,
    target: 'es2020',
    // Inline assets would be data: URLs: allowed for images, but a module preload polyfill
    // is inline script, so it stays off (Chromium and Android's Chrome support modulepreload).
    modulePreload: { polyfill: false },
    reportCompressedSize: false,
  },
  server: {
    proxy: {
      '/api': { target: 'http://127.0.0.1:8080', ws: true },
      '/dicom-web': 'http://127.0.0.1:8080',
    },
  },
  test: {
    environment: 'jsdom',
    include: ['src/**/*.test.ts'],
    // Component tests import Element Plus' CSS (through unplugin-vue-components): let Vite
    // handle it instead of Node.
    server: { deps: { inline: ['element-plus'] } },
  },
});
