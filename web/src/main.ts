import { createApp } from 'vue';
import { createPinia } from 'pinia';
import App from './App.vue';
import { i18n, currentLocale } from './i18n';
import { createAppRouter } from './router';
import { reportFatal } from './components/errorState';
import './styles.css';

const app = createApp(App);
const pinia = createPinia();
app.use(pinia);
app.use(i18n);
const router = createAppRouter(pinia);
app.use(router);
app.config.errorHandler = (err) => reportFatal(err);
// A screen's chunk that fails to load (a dropped 4G link, a server updated since the page
// loaded) is shown as an error with a reload button, not a blank page.
router.onError((err) => reportFatal(err));
window.addEventListener('unhandledrejection', (e) => {
  console.error(e.reason);
});
document.documentElement.lang = currentLocale();
app.mount('#app');
