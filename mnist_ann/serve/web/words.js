// The page's words, in the learner's language: one message table per language (messages/en.json, ko.json), the
// language the browser asks for unless the learner chose one (remembered), English for every other language.
// A text is shown with `show`, which keeps its key and values on the element, so that switching the language
// says every text again in place: nothing is reloaded, the drawing and the answers stay. Texts are set as text,
// never parsed as HTML.

const LANGUAGES = ["en", "ko"];
const tables = Object.fromEntries(await Promise.all(LANGUAGES.map(async (code) => {
  const response = await fetch(`web/messages/${code}.json`);
  return [code, await response.json()];
})));
const asked = (navigator.languages || [navigator.language]).map((code) => code.toLowerCase().split("-")[0]);
let language = localStorage.getItem("language") || asked.find((code) => LANGUAGES.includes(code)) || "en";
if (!LANGUAGES.includes(language)) language = "en";

// A message with its {values} filled in; a value may be a message itself ({key, values}). A key missing from
// the language's table is said in English (tests/test_words.py finds it).
export function t(key, values = {}) {
  const text = tables[language][key] ?? tables.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (whole, name) => {
    const value = values[name];
    if (value === undefined || value === null) return "";
    return typeof value === "object" ? t(value.key, value.values) : String(value);
  });
}

// `node`'s text (or, with `attribute`, that attribute) as the message `key` says it, now and after a switch.
export function show(node, key, values = {}, attribute = null) {
  const name = attribute ? `t-${attribute}` : "t";
  node.dataset[camel(name)] = key;
  node.dataset[camel(`${name}-values`)] = JSON.stringify(values);
  if (attribute) node.setAttribute(attribute, t(key, values));
  else node.textContent = t(key, values);
  return node;
}

// `node`'s text as data, not words (a class name, a run, a number, the service's own message): said as it is in
// every language.
export function showData(node, text) {
  delete node.dataset.t;
  delete node.dataset.tValues;
  node.dataset.raw = "";
  node.textContent = text;
  return node;
}

const camel = (name) => name.replace(/-(\w)/g, (_, letter) => letter.toUpperCase());
const ATTRIBUTES = ["aria-label", "alt", "title"];

function sayAll() {
  document.documentElement.lang = language;
  document.title = t("page.title");
  for (const node of document.querySelectorAll("[data-t]")) {
    node.textContent = t(node.dataset.t, JSON.parse(node.dataset.tValues || "{}"));
  }
  for (const attribute of ATTRIBUTES) {
    const key = camel(`t-${attribute}`);
    for (const node of document.querySelectorAll(`[data-t-${attribute}]`)) {
      node.setAttribute(attribute, t(node.dataset[key], JSON.parse(node.dataset[`${key}Values`] || "{}")));
    }
  }
}

export function currentLanguage() { return language; }

const picker = document.getElementById("language");
picker.value = language;
picker.addEventListener("change", () => {
  language = picker.value;
  localStorage.setItem("language", language);
  sayAll();
  document.dispatchEvent(new Event("language"));  // for what is laid out from the words (the runs' cards)
});
sayAll();
